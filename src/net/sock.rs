// asyncio's low-level sock_* API: written in this session by the networking work (issue 4).
