//! The NCCL communicator (cargo feature `nccl`).
//!
//! Without a GPU: `libnccl.so.2` loads from torch's `nvidia-nccl-cu13`
//! wheel and reports a 2.x version (skipped, saying so, only when no such
//! library exists at all); a two-rank group exchanges NCCL's unique id over
//! TCP and stops, with a clear error, where it needs the GPU; asking for
//! NCCL on the CPU is an error.
//!
//! With CUDA (each test prints a skip line otherwise): a one-rank NCCL
//! group on cuda:0 gives the expected all-reduce, all-gather, broadcast and
//! barrier results for f32 and bf16, stays ordered with torch's kernels
//! over many collectives in a row, refuses CPU tensors and unsupported
//! dtypes; and SmolLM2, loaded for an explicitly NCCL group of one (so
//! every all-reduce and all-gather of the model runs through NCCL), matches
//! transformers as `smollm2_parity` requires (`ENGINE_TEST_DTYPE` picks
//! the precision, f32 by default).
//!
//! With two or more GPUs visible (skipped, saying so, otherwise): a
//! two-rank NCCL group, rank r on cuda:r in its own thread, joined over the
//! TCP rendezvous, where all-reduce, all-gather and broadcast combine two
//! different tensors, so a collective that returned its input would fail.
//! Lent GPU machines so far had one GPU (NCCL refuses two ranks on one
//! device), so multi-rank NCCL stays unverified until such a machine runs
//! `scripts/gpu_check.sh`, which runs this test when it sees two GPUs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::Path;

use common::Target;
use tch::{Device, Kind, Tensor};
use workers::loader::QuantizationChoice;
use workers::parallel::{
    nccl_library_path, nccl_version, CommError, CommunicatorKind, TcpOptions, TpGroup,
};

fn nccl_group(device: Device) -> Result<TpGroup, CommError> {
    TpGroup::join(
        0,
        1,
        "",
        CommunicatorKind::Nccl,
        device,
        TcpOptions::default(),
    )
}

/// Whether CUDA is usable; prints the skip line when not.
fn cuda_or_skip(test: &str) -> bool {
    let ok = tch::Cuda::is_available() && tch::Cuda::device_count() > 0;
    if !ok {
        eprintln!("{test}: skipped (no CUDA device visible)");
    }
    ok
}

#[test]
fn the_library_loads_and_reports_nccl_2() {
    let wheel = option_env!("WORKERS_TORCH_LIB")
        .map(|lib| Path::new(lib).join("../../nvidia/nccl/lib/libnccl.so.2"));
    let present = std::env::var_os("ENGINE_NCCL_LIBRARY").is_some()
        || wheel.as_deref().is_some_and(Path::exists);
    match nccl_version() {
        Ok(v) => {
            eprintln!(
                "NCCL {v} from {}",
                nccl_library_path().unwrap_or("(unknown)")
            );
            assert_eq!(v.major, 2, "NCCL {v}");
            assert!(v.minor >= 10, "NCCL {v} predates bf16 collectives");
        }
        Err(e) if !present => {
            eprintln!("the_library_loads_and_reports_nccl_2: skipped (no libnccl.so.2: {e})");
        }
        Err(e) => panic!("torch's NCCL wheel is there ({wheel:?}) but does not load: {e}"),
    }
}

#[test]
fn nccl_on_the_cpu_is_refused() {
    let err = nccl_group(Device::Cpu).err().unwrap();
    assert!(matches!(err, CommError::NcclUnavailable(_)), "{err}");
    assert!(err.to_string().contains("CUDA"), "{err}");
}

/// Without a GPU, a two-rank NCCL group gets as far as it can: rank 0's
/// unique id from NCCL, sent to rank 1 over the TCP rendezvous, then
/// making cuda:0 current fails on both ranks with a clear error.
#[test]
fn without_a_gpu_the_bootstrap_runs_up_to_cuda() {
    if tch::Cuda::is_available() {
        // Two ranks of one process on one GPU is not a valid NCCL group.
        eprintln!("without_a_gpu_the_bootstrap_runs_up_to_cuda: skipped (a GPU is visible)");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id = format!("tcp://127.0.0.1:{port}");
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            let id = id.clone();
            std::thread::spawn(move || {
                TpGroup::join(
                    rank,
                    2,
                    &id,
                    CommunicatorKind::Nccl,
                    Device::Cuda(0),
                    TcpOptions::default(),
                )
                .err()
            })
        })
        .collect();
    for (rank, r) in ranks.into_iter().enumerate() {
        let err = r.join().unwrap().unwrap();
        assert!(
            matches!(&err, CommError::NcclUnavailable(m) if m.contains("cudaSetDevice")),
            "rank {rank}: {err}"
        );
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

#[test]
fn one_rank_collectives_on_cuda() {
    if !cuda_or_skip("one_rank_collectives_on_cuda") {
        return;
    }
    let device = Device::Cuda(0);
    let tp = nccl_group(device).unwrap();
    assert!(
        !tp.skips_collectives(),
        "an NCCL group must run collectives"
    );
    for kind in [Kind::Float, Kind::BFloat16] {
        // Non-integer values that bf16 holds exactly: k / 8.
        let t = (Tensor::arange(24, (Kind::Float, device)) / 8.0 - 1.0)
            .to_kind(kind)
            .view([2, 3, 4]);
        let want = values(&t);

        let sum = tp.comm.all_reduce_sum(&t).unwrap();
        assert_eq!(
            (sum.kind(), sum.device(), sum.size()),
            (kind, device, t.size())
        );
        assert_eq!(values(&sum), want, "{kind:?} all_reduce_sum");

        for dim in [0, 1, 2, -1] {
            let g = tp.comm.all_gather(&t, dim).unwrap();
            assert_eq!(g.size(), t.size(), "{kind:?} all_gather dim {dim}");
            assert_eq!(values(&g), want, "{kind:?} all_gather dim {dim}");
        }
        // A non-contiguous input (a transposed view) is made contiguous.
        let tr = t.transpose(0, 2);
        assert_eq!(
            values(&tp.comm.all_reduce_sum(&tr).unwrap()),
            values(&tr),
            "{kind:?} transposed all_reduce_sum"
        );

        let b = tp.comm.broadcast(&t, 0).unwrap();
        assert_eq!(values(&b), want, "{kind:?} broadcast");
        tp.comm.barrier().unwrap();
    }
    assert!(matches!(
        tp.comm
            .broadcast(&Tensor::zeros([2], (Kind::Float, device)), 1),
        Err(CommError::Mismatch { .. })
    ));
}

#[test]
fn collectives_stay_ordered_with_torch_kernels() {
    if !cuda_or_skip("collectives_stay_ordered_with_torch_kernels") {
        return;
    }
    let device = Device::Cuda(0);
    let tp = nccl_group(device).unwrap();
    // Each step's input is made by a kernel just before the collective
    // and read by one just after: any missing ordering shows as wrong sums.
    let mut ours = Tensor::arange(1 << 16, (Kind::Float, device)) / 1024.0;
    let mut cpu = Tensor::arange(1 << 16, (Kind::Float, Device::Cpu)) / 1024.0;
    for _ in 0..200 {
        ours = tp.comm.all_reduce_sum(&(&ours * 0.5 + 1.0)).unwrap() - 0.25;
        cpu = (&cpu * 0.5 + 1.0) - 0.25;
    }
    tp.comm.barrier().unwrap();
    assert_eq!(values(&ours), values(&cpu));
}

#[test]
fn wrong_devices_and_kinds_are_errors() {
    if !cuda_or_skip("wrong_devices_and_kinds_are_errors") {
        return;
    }
    let tp = nccl_group(Device::Cuda(0)).unwrap();
    let cpu = Tensor::ones([4], (Kind::Float, Device::Cpu));
    assert!(matches!(
        tp.comm.all_reduce_sum(&cpu),
        Err(CommError::WrongDevice { .. })
    ));
    let flags = Tensor::ones([4], (Kind::Bool, Device::Cuda(0)));
    assert!(matches!(
        tp.comm.all_gather(&flags, 0),
        Err(CommError::UnsupportedKind(Kind::Bool))
    ));
    // The communicator still works after refusing them.
    tp.comm.barrier().unwrap();
}

#[test]
fn smollm2_through_a_one_rank_nccl_group_matches_transformers() {
    if !cuda_or_skip("smollm2_through_a_one_rank_nccl_group_matches_transformers") {
        return;
    }
    let target = Target {
        device: Device::Cuda(0),
        ..Target::from_env()
    };
    let tp = nccl_group(target.device).unwrap();
    let summary = common::smollm2_matches_transformers(&tp, target, QuantizationChoice::None);
    eprintln!("smollm2 nccl parity ({:?}): {summary}", target.kind);
}

/// Rank `rank`'s input in the two-rank test: distinct per rank, and
/// values bf16 holds exactly (multiples of 1/8 below 8), as are their sums.
fn rank_input(rank: usize, kind: Kind, device: Device) -> Tensor {
    ((Tensor::arange(24, (Kind::Float, device)) / 8.0 - 1.0) + 4.0 * rank as f64)
        .to_kind(kind)
        .view([2, 3, 4])
}

/// What one rank of the two-rank test got back, by collective.
type RankResults = Vec<(String, Vec<i64>, Vec<f32>)>;

/// The collectives of the two-rank test, in the same order on each rank;
/// the results are checked on the main thread, so a wrong value on one rank
/// cannot leave the other blocked inside NCCL.
fn two_rank_collectives(rank: usize, id: &str) -> RankResults {
    let device = Device::Cuda(rank);
    let tp = TpGroup::join(
        rank,
        2,
        id,
        CommunicatorKind::Nccl,
        device,
        TcpOptions::default(),
    )
    .unwrap_or_else(|e| panic!("rank {rank}: joining the NCCL group: {e}"));
    assert_eq!(tp.comm.name(), "nccl");
    let mut got: RankResults = Vec::new();
    let mut keep = |what: String, t: &Tensor| {
        assert_eq!(t.device(), device, "{what}");
        got.push((what, t.size(), values(t)));
    };
    for kind in [Kind::Float, Kind::BFloat16] {
        let t = rank_input(rank, kind, device);
        keep(
            format!("{kind:?} all_reduce_sum"),
            &tp.comm.all_reduce_sum(&t).unwrap(),
        );
        keep(
            format!("{kind:?} transposed all_reduce_sum"),
            &tp.comm.all_reduce_sum(&t.transpose(0, 2)).unwrap(),
        );
        for dim in [0, 1, 2, -1] {
            keep(
                format!("{kind:?} all_gather dim {dim}"),
                &tp.comm.all_gather(&t, dim).unwrap(),
            );
        }
        for root in 0..2 {
            keep(
                format!("{kind:?} broadcast from {root}"),
                &tp.comm.broadcast(&t, root).unwrap(),
            );
        }
        tp.comm.barrier().unwrap();
    }
    // Many collectives in a row, each fed by a kernel and read by the next.
    let mut x = Tensor::arange(1 << 16, (Kind::Float, device)) / 1024.0 + rank as f64;
    for _ in 0..100 {
        x = tp.comm.all_reduce_sum(&(&x * 0.5 + 1.0)).unwrap() - 0.25;
    }
    tp.comm.barrier().unwrap();
    keep("100 ordered all_reduce_sum".to_owned(), &x);
    got
}

/// What every rank must get, computed on the CPU.
fn two_rank_expected() -> RankResults {
    let mut want: RankResults = Vec::new();
    let mut keep = |what: String, t: &Tensor| want.push((what, t.size(), values(t)));
    for kind in [Kind::Float, Kind::BFloat16] {
        let inputs: Vec<Tensor> = (0..2).map(|r| rank_input(r, kind, Device::Cpu)).collect();
        let sum = &inputs[0] + &inputs[1];
        keep(format!("{kind:?} all_reduce_sum"), &sum);
        keep(
            format!("{kind:?} transposed all_reduce_sum"),
            &sum.transpose(0, 2),
        );
        for dim in [0, 1, 2, -1] {
            keep(
                format!("{kind:?} all_gather dim {dim}"),
                &Tensor::cat(&inputs, dim),
            );
        }
        for (root, input) in inputs.iter().enumerate() {
            keep(format!("{kind:?} broadcast from {root}"), input);
        }
    }
    let mut xs: Vec<Tensor> = (0..2)
        .map(|r| Tensor::arange(1 << 16, (Kind::Float, Device::Cpu)) / 1024.0 + r as f64)
        .collect();
    for _ in 0..100 {
        let sum = (&xs[0] * 0.5 + 1.0) + (&xs[1] * 0.5 + 1.0) - 0.25;
        xs = vec![sum.shallow_clone(), sum];
    }
    keep("100 ordered all_reduce_sum".to_owned(), &xs[0]);
    want
}

#[test]
fn two_rank_collectives_on_two_gpus() {
    let visible = if tch::Cuda::is_available() {
        tch::Cuda::device_count()
    } else {
        0
    };
    if visible < 2 {
        eprintln!(
            "two_rank_collectives_on_two_gpus: skipped ({visible} CUDA device(s) visible; NCCL \
             needs one GPU per rank, so multi-rank NCCL is verified only where two are)"
        );
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id = format!("tcp://127.0.0.1:{port}");
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            let id = id.clone();
            std::thread::spawn(move || two_rank_collectives(rank, &id))
        })
        .collect();
    let want = two_rank_expected();
    for (rank, handle) in ranks.into_iter().enumerate() {
        let got = handle
            .join()
            .unwrap_or_else(|_| panic!("rank {rank} panicked"));
        assert_eq!(got.len(), want.len(), "rank {rank}");
        for ((what, size, vals), (want_what, want_size, want_vals)) in got.iter().zip(&want) {
            assert_eq!(what, want_what);
            assert_eq!(size, want_size, "rank {rank}: {what} shape");
            assert_eq!(vals, want_vals, "rank {rank}: {what}");
        }
    }
    eprintln!(
        "two_rank_collectives_on_two_gpus: {} collectives checked on 2 ranks",
        want.len()
    );
}
