//! The GPU communicator: NCCL's all-reduce, all-gather and broadcast on
//! CUDA tensors, through a small FFI to `libnccl.so.2` loaded at run time.
//!
//! **Library.** torch's pip wheel depends on `nvidia-nccl-cu13`, whose
//! `nvidia/nccl/lib/libnccl.so.2` `libtorch_cuda.so` already loads (it is
//! DT_NEEDED there, found through torch's rpath), so `dlopen("libnccl.so.2")`
//! returns that copy; failing that, the wheel next to the torch this crate
//! was built against; `$ENGINE_NCCL_LIBRARY` (a path) replaces both. Only the nine functions used are looked up with `dlsym`, and
//! the few types are written by hand from `nccl.h` (NCCL 2.28.9 in the
//! wheel; these values have not changed since 2.10, which added bf16).
//! Why not `cudarc`: its safe NCCL API wants its own `CudaSlice` and
//! `CudaStream`, so we would only use its raw layer; this way no CUDA is
//! needed at build time, the CPU build is untouched, and there is one
//! dependency fewer.
//!
//! **Stream.** tch exposes no CUDA stream API, and nothing in this process
//! sets one, so torch's current stream is the default (legacy, null)
//! stream. Every collective is enqueued on that same null stream: it runs
//! after the kernels that produced its input and before any kernel that
//! reads its output, with no event or synchronization of ours, and torch's
//! caching allocator (stream-ordered on that stream) may reuse the input's
//! memory as soon as we return. NCCL's calls return once the work is
//! enqueued; a later copy to the host waits for it, as for any kernel.
//!
//! **Tensors.** Inputs are made contiguous; outputs are new tensors from
//! torch on the same device (`all_gather` gathers into a `[world, ...]`
//! buffer, then moves that axis next to `dim`). A tensor on another
//! device is [`CommError::WrongDevice`], a dtype NCCL lacks
//! [`CommError::UnsupportedKind`].
//!
//! **Bootstrap.** Rank 0 asks NCCL for a 128-byte unique id and broadcasts
//! it over the bootstrap communicator (the TCP rendezvous); every rank
//! makes its CUDA device current and joins with `ncclCommInitRank`. A group
//! of one uses its own id. NCCL has no timeouts: a rank that dies leaves
//! its peers waiting inside NCCL, and the executor, which polls its worker
//! processes, fails the group and kills them. `Drop` aborts the
//! communicator (`ncclCommAbort`), which never waits for peers.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Mutex, MutexGuard, OnceLock};

use tch::{Device, Kind, Tensor};

use super::{CommError, Communicator};
use crate::runner::device_memory::cuda_set_device;

/// `NCCL_UNIQUE_ID_BYTES`.
const UNIQUE_ID_BYTES: usize = 128;

/// `ncclUniqueId`: `struct { char internal[128]; }`, passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct UniqueId {
    internal: [c_char; UNIQUE_ID_BYTES],
}

/// `ncclComm_t` (an opaque pointer).
type Comm = *mut c_void;
/// `cudaStream_t`; always null here (the legacy default stream).
type Stream = *mut c_void;
/// `ncclResult_t`.
type NcclResult = c_int;

/// `ncclSuccess`.
const SUCCESS: NcclResult = 0;
/// `ncclInProgress`: only non-blocking communicators return it.
const IN_PROGRESS: NcclResult = 7;
/// `ncclSum` (`ncclRedOp_t`).
const SUM: c_int = 0;

/// `ncclDataType_t` of a torch dtype (values from `nccl.h`: ncclInt8 0,
/// ncclUint8 1, ncclInt32 2, ncclInt64 4, ncclFloat16 6, ncclFloat32 7,
/// ncclFloat64 8, ncclBfloat16 9).
fn data_type(kind: Kind) -> Result<c_int, CommError> {
    Ok(match kind {
        Kind::Int8 => 0,
        Kind::Uint8 => 1,
        Kind::Int => 2,
        Kind::Int64 => 4,
        Kind::Half => 6,
        Kind::Float => 7,
        Kind::Double => 8,
        Kind::BFloat16 => 9,
        other => return Err(CommError::UnsupportedKind(other)),
    })
}

type GetVersion = unsafe extern "C" fn(*mut c_int) -> NcclResult;
type GetUniqueId = unsafe extern "C" fn(*mut UniqueId) -> NcclResult;
type CommInitRank = unsafe extern "C" fn(*mut Comm, c_int, UniqueId, c_int) -> NcclResult;
type AllReduce = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    c_int,
    c_int,
    Comm,
    Stream,
) -> NcclResult;
type AllGather =
    unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, Comm, Stream) -> NcclResult;
type Broadcast = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    c_int,
    c_int,
    Comm,
    Stream,
) -> NcclResult;
type CommAbort = unsafe extern "C" fn(Comm) -> NcclResult;
type GetErrorString = unsafe extern "C" fn(NcclResult) -> *const c_char;
type CommGetAsyncError = unsafe extern "C" fn(Comm, *mut NcclResult) -> NcclResult;
type GetLastError = unsafe extern "C" fn(Comm) -> *const c_char;

/// The NCCL functions this module calls, resolved once per process.
struct Library {
    path: String,
    get_version: GetVersion,
    get_unique_id: GetUniqueId,
    comm_init_rank: CommInitRank,
    all_reduce: AllReduce,
    all_gather: AllGather,
    broadcast: Broadcast,
    comm_abort: CommAbort,
    get_error_string: GetErrorString,
    comm_get_async_error: CommGetAsyncError,
    get_last_error: GetLastError,
}

/// Environment variable naming the NCCL library to load (a path).
const LIBRARY_ENV: &str = "ENGINE_NCCL_LIBRARY";

/// Where to look for `libnccl.so.2`, in order: only `$ENGINE_NCCL_LIBRARY`
/// when set.
fn candidates() -> Vec<String> {
    if let Ok(path) = std::env::var(LIBRARY_ENV) {
        return vec![path];
    }
    let mut out = vec!["libnccl.so.2".to_string()];
    if let Some(torch_lib) = option_env!("WORKERS_TORCH_LIB") {
        out.push(format!("{torch_lib}/../../nvidia/nccl/lib/libnccl.so.2"));
    }
    out
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a valid C string owned by libc.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        "unknown dlopen error".into()
    } else {
        // SAFETY: non-null, NUL-terminated (see above).
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

/// Looks `name` up in `handle` as a function of type `F`.
///
/// # Safety
/// `F` must be the C signature of the symbol `name`.
unsafe fn function<F: Copy>(handle: *mut c_void, name: &CStr) -> Result<F, String> {
    // SAFETY: `handle` came from a successful dlopen, `name` is a valid C
    // string.
    let ptr = unsafe { libc::dlsym(handle, name.as_ptr()) };
    if ptr.is_null() {
        return Err(format!("{} not found", name.to_string_lossy()));
    }
    // SAFETY: `F` is a function pointer type of the symbol's signature
    // (the caller's promise), the same size as a data pointer.
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&ptr) })
}

impl Library {
    fn open() -> Result<Self, String> {
        let mut tried = Vec::new();
        for path in candidates() {
            let Ok(c_path) = CString::new(path.clone()) else {
                continue;
            };
            // SAFETY: dlopen with a valid C string; a null return is handled.
            let handle =
                unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if handle.is_null() {
                tried.push(format!("{path}: {}", dl_error()));
                continue;
            }
            // SAFETY: each type below is the signature `nccl.h` declares
            // for that function.
            return unsafe {
                Ok(Self {
                    path,
                    get_version: function(handle, c"ncclGetVersion")?,
                    get_unique_id: function(handle, c"ncclGetUniqueId")?,
                    comm_init_rank: function(handle, c"ncclCommInitRank")?,
                    all_reduce: function(handle, c"ncclAllReduce")?,
                    all_gather: function(handle, c"ncclAllGather")?,
                    broadcast: function(handle, c"ncclBroadcast")?,
                    comm_abort: function(handle, c"ncclCommAbort")?,
                    get_error_string: function(handle, c"ncclGetErrorString")?,
                    comm_get_async_error: function(handle, c"ncclCommGetAsyncError")?,
                    get_last_error: function(handle, c"ncclGetLastError")?,
                })
            };
        }
        Err(format!(
            "libnccl.so.2 could not be opened (set {LIBRARY_ENV} to its path): {}",
            tried.join("; ")
        ))
    }

    /// NCCL's text for `code`, with the communicator's last error if any.
    fn describe(&self, code: NcclResult, comm: Comm) -> String {
        // SAFETY: ncclGetErrorString takes any value and returns a static
        // string (or null).
        let mut text = c_text(unsafe { (self.get_error_string)(code) });
        // SAFETY: ncclGetLastError accepts a null or live communicator and
        // returns a string NCCL owns (or null).
        let last = c_text(unsafe { (self.get_last_error)(comm) });
        if !last.is_empty() {
            text = format!("{text}: {last}");
        }
        text
    }
}

fn c_text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        String::new()
    } else {
        // SAFETY: NCCL returns NUL-terminated strings.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}

fn library() -> Result<&'static Library, CommError> {
    static LIBRARY: OnceLock<Result<Library, String>> = OnceLock::new();
    LIBRARY
        .get_or_init(Library::open)
        .as_ref()
        .map_err(|e| CommError::NcclUnavailable(e.clone()))
}

/// An NCCL release, as `ncclGetVersion` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NcclVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl NcclVersion {
    /// Decodes `NCCL_VERSION_CODE`: `major * 10000 + minor * 100 + patch`
    /// from 2.9 on, `major * 1000 + minor * 100 + patch` before.
    fn from_code(code: u32) -> Self {
        if code >= 10000 {
            Self {
                major: code / 10000,
                minor: code % 10000 / 100,
                patch: code % 100,
            }
        } else {
            Self {
                major: code / 1000,
                minor: code % 1000 / 100,
                patch: code % 100,
            }
        }
    }
}

impl std::fmt::Display for NcclVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version of the NCCL library this process loads (loading it if
/// needed). Needs no GPU.
pub fn nccl_version() -> Result<NcclVersion, CommError> {
    let lib = library()?;
    let mut code: c_int = 0;
    // SAFETY: a valid out-pointer.
    let rc = unsafe { (lib.get_version)(&mut code) };
    if rc != SUCCESS {
        return Err(CommError::Nccl {
            rank: 0,
            op: "ncclGetVersion",
            code: rc,
            message: lib.describe(rc, std::ptr::null_mut()),
        });
    }
    Ok(NcclVersion::from_code(u32::try_from(code).unwrap_or(0)))
}

/// Which file the NCCL library was loaded from (as given to `dlopen`).
pub fn nccl_library_path() -> Result<&'static str, CommError> {
    Ok(library()?.path.as_str())
}

/// An NCCL communicator owned by this process.
struct Handle {
    comm: Comm,
    /// The first error a call returned: the communicator is unusable after
    /// it, so every later collective fails at once with it.
    failed: Option<(NcclResult, String)>,
}

// SAFETY: an NCCL communicator may be used from any thread as long as
// calls on it do not overlap; the `Mutex` around `Handle` serializes them.
unsafe impl Send for Handle {}

/// One rank of an NCCL group on one CUDA device.
pub struct NcclCommunicator {
    rank: usize,
    world_size: usize,
    device: Device,
    lib: &'static Library,
    handle: Mutex<Handle>,
}

impl NcclCommunicator {
    /// Joins the NCCL group of `world_size` as `rank` on CUDA device
    /// `device_index`: rank 0's unique id reaches the others through
    /// `bootstrap`'s broadcast (for a group of one, pass `SingleRank`).
    /// Blocks until every rank has joined.
    pub fn connect(
        rank: usize,
        world_size: usize,
        device_index: usize,
        bootstrap: &dyn Communicator,
    ) -> Result<Self, CommError> {
        let fail = |op, code, message| CommError::Nccl {
            rank,
            op,
            code,
            message,
        };
        if world_size == 0 || rank >= world_size {
            return Err(CommError::NcclUnavailable(format!(
                "rank {rank} is outside a group of {world_size}"
            )));
        }
        let nranks = c_int::try_from(world_size)
            .map_err(|_| CommError::NcclUnavailable(format!("{world_size} ranks")))?;
        let lib = library()?;
        let mut id = UniqueId {
            internal: [0; UNIQUE_ID_BYTES],
        };
        if rank == 0 {
            // SAFETY: a valid out-pointer to a 128-byte ncclUniqueId.
            let rc = unsafe { (lib.get_unique_id)(&mut id) };
            if rc != SUCCESS {
                return Err(fail(
                    "ncclGetUniqueId",
                    rc,
                    lib.describe(rc, std::ptr::null_mut()),
                ));
            }
        }
        let bytes: Vec<u8> = id.internal.iter().map(|&c| c as u8).collect();
        let shared = bootstrap.broadcast(&Tensor::from_slice(&bytes), 0)?;
        let shared = Vec::<u8>::try_from(&shared.to_device(Device::Cpu))?;
        if shared.len() != UNIQUE_ID_BYTES {
            return Err(CommError::Mismatch {
                rank,
                peer: 0,
                op: "nccl bootstrap",
                reason: format!("a unique id of {} bytes", shared.len()),
            });
        }
        for (dst, src) in id.internal.iter_mut().zip(&shared) {
            *dst = *src as c_char;
        }
        // ncclCommInitRank joins on the calling thread's current device.
        cuda_set_device(device_index).map_err(CommError::NcclUnavailable)?;
        let mut comm: Comm = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; `id` is the group's unique id, rank
        // and nranks were checked above.
        let rc = unsafe { (lib.comm_init_rank)(&mut comm, nranks, id, rank as c_int) };
        if rc != SUCCESS || comm.is_null() {
            let message = lib.describe(rc, comm);
            if !comm.is_null() {
                // SAFETY: the half-made communicator NCCL handed back,
                // never used again.
                let _ = unsafe { (lib.comm_abort)(comm) };
            }
            return Err(fail("ncclCommInitRank", rc, message));
        }
        tracing::info!(
            rank,
            world_size,
            device = device_index,
            library = lib.path.as_str(),
            "joined the NCCL group"
        );
        Ok(Self {
            rank,
            world_size,
            device: Device::Cuda(device_index),
            lib,
            handle: Mutex::new(Handle { comm, failed: None }),
        })
    }

    /// The rank of this communicator.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Ranks in the group.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    fn lock(&self) -> MutexGuard<'_, Handle> {
        // A panic while holding the lock leaves the communicator as NCCL
        // left it; the next call reports what NCCL says.
        self.handle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `t` made contiguous, after checking its device.
    fn input(&self, t: &Tensor, op: &'static str) -> Result<Tensor, CommError> {
        if t.device() != self.device {
            return Err(CommError::WrongDevice {
                rank: self.rank,
                op,
                got: t.device(),
                want: self.device,
            });
        }
        Ok(t.contiguous())
    }

    /// Runs one NCCL call on the communicator and checks both its result
    /// and the communicator's asynchronous error; the first failure sticks.
    fn call(&self, op: &'static str, f: impl FnOnce(Comm) -> NcclResult) -> Result<(), CommError> {
        let mut handle = self.lock();
        if let Some((code, message)) = &handle.failed {
            return Err(CommError::Nccl {
                rank: self.rank,
                op,
                code: *code,
                message: format!("the communicator failed earlier: {message}"),
            });
        }
        let mut rc = f(handle.comm);
        if rc == SUCCESS {
            let mut async_rc: NcclResult = SUCCESS;
            // SAFETY: a live communicator and a valid out-pointer.
            let got = unsafe { (self.lib.comm_get_async_error)(handle.comm, &mut async_rc) };
            rc = if got != SUCCESS { got } else { async_rc };
        }
        if rc == SUCCESS || rc == IN_PROGRESS {
            return Ok(());
        }
        let message = self.lib.describe(rc, handle.comm);
        handle.failed = Some((rc, message.clone()));
        Err(CommError::Nccl {
            rank: self.rank,
            op,
            code: rc,
            message,
        })
    }
}

impl Communicator for NcclCommunicator {
    fn name(&self) -> &'static str {
        "nccl"
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor, CommError> {
        let op = "ncclAllReduce";
        let input = self.input(t, op)?;
        let dtype = data_type(input.kind())?;
        let out = input.f_empty_like()?;
        let count = input.numel();
        if count == 0 {
            return Ok(out);
        }
        let (send, recv) = (input.data_ptr(), out.data_ptr());
        // SAFETY: `send` and `recv` are `count` elements of `dtype` on this
        // communicator's device, alive until the call has enqueued the
        // work; later kernels on the same (null) stream run after it.
        self.call(op, |comm| unsafe {
            (self.lib.all_reduce)(send, recv, count, dtype, SUM, comm, std::ptr::null_mut())
        })?;
        Ok(out)
    }

    fn all_gather(&self, t: &Tensor, dim: i64) -> Result<Tensor, CommError> {
        let op = "ncclAllGather";
        let input = self.input(t, op)?;
        let dtype = data_type(input.kind())?;
        let shape = input.size();
        let ndim = shape.len() as i64;
        let d = if dim < 0 { dim + ndim } else { dim };
        if d < 0 || d >= ndim {
            return Err(CommError::Torch(tch::TchError::Shape(format!(
                "all_gather along dim {dim} of a {ndim}-d tensor"
            ))));
        }
        let world = self.world_size as i64;
        let mut buffer_shape = vec![world];
        buffer_shape.extend_from_slice(&shape);
        let buffer = Tensor::f_empty(buffer_shape.as_slice(), (input.kind(), self.device))?;
        let count = input.numel();
        if count > 0 {
            let (send, recv) = (input.data_ptr(), buffer.data_ptr());
            // SAFETY: `send` holds `count` elements, `recv` `world * count`,
            // both of `dtype` on this device (see all_reduce_sum).
            self.call(op, |comm| unsafe {
                (self.lib.all_gather)(send, recv, count, dtype, comm, std::ptr::null_mut())
            })?;
        }
        Ok(concat_gathered(&buffer, d as usize)?)
    }

    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor, CommError> {
        let op = "ncclBroadcast";
        if root >= self.world_size {
            return Err(CommError::Mismatch {
                rank: self.rank,
                peer: root,
                op,
                reason: format!("root {root} is outside the group"),
            });
        }
        let input = self.input(t, op)?;
        let dtype = data_type(input.kind())?;
        let out = input.f_empty_like()?;
        let count = input.numel();
        if count == 0 {
            return Ok(out);
        }
        let (send, recv) = (input.data_ptr(), out.data_ptr());
        // SAFETY: as in all_reduce_sum; `root` is inside the group.
        self.call(op, |comm| unsafe {
            (self.lib.broadcast)(
                send,
                recv,
                count,
                dtype,
                root as c_int,
                comm,
                std::ptr::null_mut(),
            )
        })?;
        Ok(out)
    }

    /// A one-element all-reduce, waited for on the host: returns once every
    /// rank has joined it (and all earlier work on the stream is done).
    fn barrier(&self) -> Result<(), CommError> {
        let token = Tensor::f_ones([1], (Kind::Float, self.device))?;
        let summed = self.all_reduce_sum(&token)?;
        let got = summed.f_to_device(Device::Cpu)?.f_double_value(&[0])?;
        if got != self.world_size as f64 {
            return Err(CommError::Mismatch {
                rank: self.rank,
                peer: 0,
                op: "barrier",
                reason: format!("counted {got} ranks, not {}", self.world_size),
            });
        }
        Ok(())
    }
}

/// NCCL's all-gather buffer `[world, s0, .., s_d, ..]` (rank r's tensor
/// at index r) as the concatenation along `d`, `[s0, .., world * s_d, ..]`
/// in rank order: what `Tensor::cat(parts, d)` gives.
fn concat_gathered(buffer: &Tensor, d: usize) -> Result<Tensor, tch::TchError> {
    let size = buffer.size();
    let mut out_shape = size[1..].to_vec();
    if let (Some(world), Some(dim)) = (size.first(), out_shape.get_mut(d)) {
        *dim *= *world;
    }
    buffer
        .f_movedim([0i64], [d as i64])?
        .f_reshape(out_shape.as_slice())
}

impl Drop for NcclCommunicator {
    fn drop(&mut self) {
        let handle = self.lock();
        if !handle.comm.is_null() {
            // SAFETY: a live communicator, never used after this.
            let _ = unsafe { (self.lib.comm_abort)(handle.comm) };
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn decodes_version_codes() {
        let v = NcclVersion::from_code(22809);
        assert_eq!((v.major, v.minor, v.patch), (2, 28, 9));
        assert_eq!(v.to_string(), "2.28.9");
        let old = NcclVersion::from_code(2708);
        assert_eq!((old.major, old.minor, old.patch), (2, 7, 8));
    }

    #[test]
    fn maps_torch_kinds_to_nccl_types() {
        assert_eq!(data_type(Kind::Float).unwrap(), 7);
        assert_eq!(data_type(Kind::BFloat16).unwrap(), 9);
        assert_eq!(data_type(Kind::Half).unwrap(), 6);
        assert_eq!(data_type(Kind::Int64).unwrap(), 4);
        assert!(matches!(
            data_type(Kind::Bool),
            Err(CommError::UnsupportedKind(Kind::Bool))
        ));
        assert!(matches!(
            data_type(Kind::ComplexFloat),
            Err(CommError::UnsupportedKind(_))
        ));
    }

    #[test]
    fn gathered_buffer_is_the_concatenation_in_rank_order() {
        let parts: Vec<Tensor> = (0..3)
            .map(|r| Tensor::arange(24, (Kind::Float, Device::Cpu)).view([2, 3, 4]) + 100 * r)
            .collect();
        let buffer = Tensor::stack(&parts, 0);
        for d in 0..3 {
            let got = concat_gathered(&buffer, d).unwrap();
            assert!(got.equal(&Tensor::cat(&parts, d as i64)), "dim {d}");
        }
    }

    #[test]
    fn unique_id_is_128_bytes() {
        assert_eq!(std::mem::size_of::<UniqueId>(), 128);
    }
}
