/*
 * A stand-in for Windows' bcryptprimitives.dll, for running Rust test
 * binaries under Wine 8, which lacks it.
 *
 * Rust's std (1.78 and later) gets its randomness (HashMap seeds) from
 * `ProcessPrng` in bcryptprimitives.dll. Wine 8 ships no such DLL, so every
 * Rust program fails to start. This DLL exports `ProcessPrng` and forwards to
 * `SystemFunction036` (advapi32's RtlGenRandom), which Wine has.
 *
 * Built by scripts/test.sh with mingw-w64 into target/wine/, which is put on
 * WINEPATH. Only for tests under Wine: never shipped.
 */
#include <windows.h>

typedef BOOLEAN(WINAPI *rtl_gen_random_fn)(PVOID, ULONG);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    static rtl_gen_random_fn gen;
    if (!gen) {
        HMODULE advapi = LoadLibraryA("advapi32.dll");
        if (!advapi)
            return FALSE;
        gen = (rtl_gen_random_fn)GetProcAddress(advapi, "SystemFunction036");
        if (!gen)
            return FALSE;
    }
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!gen(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
