//! Makes every binary and test of this crate (and of crates that use
//! `workers::build_support` the same way) find libtorch at run time.
//!
//! Two link fixes that torch-sys leaves to us:
//! - an rpath to torch's `lib/` folder, so binaries run without
//!   `LD_LIBRARY_PATH`;
//! - `libtorch_cuda.so` kept as DT_NEEDED even under `--as-needed`: nothing
//!   references its symbols directly, so the linker would drop it and CUDA
//!   would never be seen on a GPU machine.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    // Where the NCCL communicator looks for the wheel's libnccl when it is
    // not loaded yet (`parallel::nccl`).
    println!("cargo:rustc-env=WORKERS_TORCH_LIB={lib}");
    // Re-exported to crates that depend on `workers` (as DEP_WORKERS_TORCH_RPATH_LIB).
    println!("cargo:lib={lib}");
}
