//! The CPU communicator's wire form of one tensor: a small header (magic,
//! operation, dtype, shape) then the elements as raw bytes. Ranks run on
//! one host (loopback), so the bytes are the host's, little-endian on
//! every machine we build for; the header is little-endian explicitly.
//!
//! The operation code travels with every message, so ranks that fell out
//! of step (one in an all-reduce, another in an all-gather) get a
//! [`Received::op`] mismatch instead of silently mixing tensors.

use std::io::{Read, Write};

use tch::{Device, Kind, Tensor};

use super::CommError;

/// Start of every message: "TPC1".
const MAGIC: u32 = 0x3143_5054;
/// Most dimensions a tensor may have on the wire.
const MAX_DIMS: usize = 8;

/// Which collective a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    AllReduce = 1,
    AllGather = 2,
    Broadcast = 3,
    Barrier = 4,
}

impl Op {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::AllReduce,
            2 => Self::AllGather,
            3 => Self::Broadcast,
            4 => Self::Barrier,
            _ => return None,
        })
    }

    /// Its name in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::AllReduce => "all_reduce_sum",
            Self::AllGather => "all_gather",
            Self::Broadcast => "broadcast",
            Self::Barrier => "barrier",
        }
    }
}

fn kind_code(kind: Kind) -> Result<u8, CommError> {
    Ok(match kind {
        Kind::Float => 1,
        Kind::BFloat16 => 2,
        Kind::Half => 3,
        Kind::Double => 4,
        Kind::Int64 => 5,
        Kind::Int => 6,
        Kind::Uint8 => 7,
        other => return Err(CommError::UnsupportedKind(other)),
    })
}

fn kind_from_code(code: u8) -> Option<Kind> {
    Some(match code {
        1 => Kind::Float,
        2 => Kind::BFloat16,
        3 => Kind::Half,
        4 => Kind::Double,
        5 => Kind::Int64,
        6 => Kind::Int,
        7 => Kind::Uint8,
        _ => return None,
    })
}

/// One decoded message.
pub struct Received {
    pub op: Op,
    pub tensor: Tensor,
}

/// Why a message could not be read: the stream failed, or its content is
/// not a valid message.
pub enum ReadError {
    Io(std::io::Error),
    Invalid(String),
    Torch(tch::TchError),
}

/// Writes `t` (any device; copied to the CPU) as one message.
pub fn write_tensor(w: &mut impl Write, op: Op, t: &Tensor) -> Result<(), WriteError> {
    let cpu = t.to_device(Device::Cpu).contiguous();
    let kind = cpu.kind();
    let code = kind_code(kind).map_err(WriteError::Comm)?;
    let dims = cpu.size();
    if dims.len() > MAX_DIMS {
        return Err(WriteError::Comm(CommError::TooManyDims {
            dims: dims.len(),
            max: MAX_DIMS,
        }));
    }
    let numel = cpu.numel();
    let payload = numel * kind.elt_size_in_bytes();
    let mut buf = Vec::with_capacity(8 + 8 * dims.len() + payload);
    buf.extend_from_slice(&MAGIC.to_le_bytes());
    buf.push(op as u8);
    buf.push(code);
    buf.extend_from_slice(&(dims.len() as u16).to_le_bytes());
    for d in &dims {
        buf.extend_from_slice(&d.to_le_bytes());
    }
    let start = buf.len();
    buf.resize(start + payload, 0);
    if numel > 0 {
        cpu.f_copy_data_u8(&mut buf[start..], numel)
            .map_err(|e| WriteError::Comm(CommError::Torch(e)))?;
    }
    w.write_all(&buf).map_err(WriteError::Io)?;
    w.flush().map_err(WriteError::Io)
}

/// Why a message could not be written.
pub enum WriteError {
    Io(std::io::Error),
    Comm(CommError),
}

/// Reads one message (a CPU tensor).
pub fn read_tensor(r: &mut impl Read) -> Result<Received, ReadError> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head).map_err(ReadError::Io)?;
    let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if magic != MAGIC {
        return Err(ReadError::Invalid(format!("bad magic {magic:#x}")));
    }
    let op = Op::from_code(head[4])
        .ok_or_else(|| ReadError::Invalid(format!("unknown operation {}", head[4])))?;
    let kind = kind_from_code(head[5])
        .ok_or_else(|| ReadError::Invalid(format!("unknown dtype code {}", head[5])))?;
    let ndim = u16::from_le_bytes([head[6], head[7]]) as usize;
    if ndim > MAX_DIMS {
        return Err(ReadError::Invalid(format!("{ndim} dimensions")));
    }
    let mut dims = Vec::with_capacity(ndim);
    let mut numel: usize = 1;
    for _ in 0..ndim {
        let mut d = [0u8; 8];
        r.read_exact(&mut d).map_err(ReadError::Io)?;
        let d = i64::from_le_bytes(d);
        let n = usize::try_from(d).map_err(|_| ReadError::Invalid(format!("dimension {d}")))?;
        numel = numel
            .checked_mul(n)
            .ok_or_else(|| ReadError::Invalid("shape overflows".into()))?;
        dims.push(d);
    }
    let bytes = numel
        .checked_mul(kind.elt_size_in_bytes())
        .ok_or_else(|| ReadError::Invalid("size overflows".into()))?;
    let mut data = vec![0u8; bytes];
    r.read_exact(&mut data).map_err(ReadError::Io)?;
    let tensor = Tensor::f_from_data_size(&data, &dims, kind).map_err(ReadError::Torch)?;
    Ok(Received { op, tensor })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn round_trips_shape_dtype_and_values() {
        for kind in [Kind::Float, Kind::BFloat16, Kind::Int64] {
            let t = Tensor::arange(24, (Kind::Float, Device::Cpu))
                .view([2, 3, 4])
                .to_kind(kind);
            let mut buf = Vec::new();
            if write_tensor(&mut buf, Op::AllGather, &t).is_err() {
                panic!("write failed");
            }
            let Ok(got) = read_tensor(&mut buf.as_slice()) else {
                panic!("read failed");
            };
            assert_eq!(got.op, Op::AllGather);
            assert_eq!(got.tensor.kind(), kind);
            assert!(got.tensor.equal(&t));
        }
    }

    #[test]
    fn refuses_what_it_cannot_encode() {
        let deep = Tensor::zeros([1; 9], tch::kind::FLOAT_CPU);
        assert!(matches!(
            write_tensor(&mut Vec::new(), Op::AllReduce, &deep),
            Err(WriteError::Comm(CommError::TooManyDims { dims: 9, .. }))
        ));
        let flags = Tensor::zeros([2], (Kind::Bool, Device::Cpu));
        assert!(matches!(
            write_tensor(&mut Vec::new(), Op::AllReduce, &flags),
            Err(WriteError::Comm(CommError::UnsupportedKind(_)))
        ));
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        let mut buf = Vec::new();
        if write_tensor(
            &mut buf,
            Op::AllReduce,
            &Tensor::ones([4], tch::kind::FLOAT_CPU),
        )
        .is_err()
        {
            panic!("write failed");
        }
        let truncated = &buf[..buf.len() - 1];
        assert!(matches!(
            read_tensor(&mut &truncated[..]),
            Err(ReadError::Io(_))
        ));
        buf[0] ^= 0xff;
        assert!(matches!(
            read_tensor(&mut buf.as_slice()),
            Err(ReadError::Invalid(_))
        ));
    }
}
