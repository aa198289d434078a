//! Free and total memory of a CUDA device, for sizing the KV cache, and
//! the calling thread's current device (the NCCL communicator needs it
//! set before it joins a group).
//!
//! tch exposes no `cudaMemGetInfo` or `cudaSetDevice`, so this asks the
//! CUDA runtime libtorch already loaded (`libcudart.so.13` from torch's
//! `nvidia-cuda-runtime` dependency) through `dlopen`/`dlsym`; no link-time
//! CUDA dependency, so CPU builds are unaffected.

use std::ffi::{c_int, c_void, CStr};

type SetDevice = unsafe extern "C" fn(c_int) -> c_int;
type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> c_int;

const LIBRARIES: [&CStr; 3] = [c"libcudart.so.13", c"libcudart.so.12", c"libcudart.so"];

fn symbol(handle: *mut c_void, name: &CStr) -> Option<*mut c_void> {
    // SAFETY: `handle` came from a successful dlopen and `name` is a valid
    // NUL-terminated string.
    let ptr = unsafe { libc::dlsym(handle, name.as_ptr()) };
    (!ptr.is_null()).then_some(ptr)
}

fn cudart() -> Result<*mut c_void, String> {
    LIBRARIES
        .iter()
        .find_map(|lib| {
            // SAFETY: dlopen with a valid C string; a null return is handled.
            let h = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            (!h.is_null()).then_some(h)
        })
        .ok_or_else(|| "the CUDA runtime library (libcudart) could not be opened".into())
}

fn set_device(handle: *mut c_void, index: usize) -> Result<(), String> {
    let set = symbol(handle, c"cudaSetDevice").ok_or("cudaSetDevice not found")?;
    // SAFETY: the symbol has this C signature in every CUDA runtime.
    let set = unsafe { std::mem::transmute::<*mut c_void, SetDevice>(set) };
    let device = c_int::try_from(index).map_err(|_| format!("bad device index {index}"))?;
    // SAFETY: a plain CUDA runtime call.
    let rc = unsafe { set(device) };
    if rc != 0 {
        return Err(format!("cudaSetDevice({index}) failed with code {rc}"));
    }
    Ok(())
}

/// Makes CUDA device `index` the calling thread's current device.
#[cfg_attr(not(feature = "nccl"), allow(dead_code))]
pub(crate) fn cuda_set_device(index: usize) -> Result<(), String> {
    set_device(cudart()?, index)
}

/// `(free, total)` bytes of CUDA device `index`.
pub(crate) fn cuda_mem_info(index: usize) -> Result<(u64, u64), String> {
    let handle = cudart()?;
    set_device(handle, index)?;
    let info = symbol(handle, c"cudaMemGetInfo").ok_or("cudaMemGetInfo not found")?;
    // SAFETY: the symbol has this C signature in every CUDA runtime.
    let info = unsafe { std::mem::transmute::<*mut c_void, MemGetInfo>(info) };
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: a plain CUDA runtime call with valid out-pointers.
    let rc = unsafe { info(&mut free, &mut total) };
    if rc != 0 {
        return Err(format!("cudaMemGetInfo failed with code {rc}"));
    }
    Ok((free as u64, total as u64))
}
