//! Links rcache's binaries as position-dependent executables on Linux.
//!
//! Every wrapper invocation is a new process, so startup is on the hit path. A PIE's pointer
//! tables (`.data.rel.ro`: vtables, static strings, the remote clients' tables) are written by
//! the dynamic loader at every start, one copy-on-write page fault per page; with the remote
//! storage clients linked in that was about 55 more faults and 0.2 ms per process (`perf stat
//! -r 400 rcache --version`: 1.35-1.40 ms, against 1.17 ms here and 1.15 ms before the remote).
//! Linked without PIE, the linker resolves those pointers itself and the pages are only read.
//! Only the binaries' final link changes: the code is still compiled position-independent (proc
//! macros need that), and the executable's own address is then fixed, which costs it ASLR.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
