//! The fd-leak check for subprocesses and pipes, in a test binary of its own
//! so no other test opens or closes descriptors while it counts.
#![cfg(target_os = "linux")]

use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn children_and_pipes_give_their_descriptors_back() {
    aioloop::run(async {
        let lp = aioloop::get_running_loop().unwrap();
        // Warm up what the loop opens lazily (the SIGCHLD self-pipe, the
        // executor) before taking the baseline.
        let mut warm = lp.subprocess_shell("true").unwrap();
        warm.wait().await.unwrap();
        drop(warm);
        let before = open_fds();

        for i in 0..40 {
            let mut child = lp.subprocess_exec("cat", Vec::<&str>::new()).unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let msg = format!("message {i}\n");
            stdin.write_all(msg.as_bytes()).await.unwrap();
            stdin.close().await.unwrap();
            drop(stdin);
            let mut got = String::new();
            aioloop::timeout(Duration::from_secs(20), stdout.read_to_string(&mut got))
                .await
                .expect("cat answered")
                .unwrap();
            assert_eq!(got, msg);
            let status = aioloop::timeout(Duration::from_secs(20), child.wait())
                .await
                .expect("cat exited")
                .unwrap();
            assert!(status.success());
        }
        for _ in 0..40 {
            let (w, r) = aioloop::process::pipe().unwrap();
            drop((w, r));
        }
        let after = open_fds();
        assert!(
            after <= before + 2,
            "descriptors leaked: {before} open before, {after} after 40 children and 40 pipes"
        );
    })
    .unwrap();
}
