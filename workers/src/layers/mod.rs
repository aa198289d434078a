//! Building blocks shared by the model files: parallel linear layers,
//! embeddings, RMSNorm and rotary embeddings. Each has a `load` that takes
//! its weights (sharded for its rank) and a `forward`.

pub mod embedding;
pub mod linear;
pub mod norm;
pub mod rotary;
