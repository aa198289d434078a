//! The `engine` command line.
//!
//! `engine generate` runs one prompt through a model in this process, for a
//! quick check of a model and its speed. `engine serve` serves the OpenAI
//! API. `engine bench serve` benchmarks any OpenAI-compatible server.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use engine::bench::{self, BenchCommand};
#[cfg(feature = "local")]
use engine::generate::{self, GenerateArgs};
use engine::serve::{self, ServeArgs};

#[derive(Parser)]
#[command(
    name = "engine",
    version,
    about = "LLM inference server and multi-provider gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process, so the variants' sizes do not matter (the
// gateway-only build's `serve` flags are much smaller than `bench`'s).
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Generate a completion for one prompt and print tokens/s.
    #[cfg(feature = "local")]
    Generate(GenerateArgs),
    /// Serve the OpenAI-compatible API: over a local model, or as the
    /// gateway of a LiteLLM `--config`.
    Serve(ServeArgs),
    /// Benchmarks (`engine bench serve`: any OpenAI-compatible server).
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// mimalloc rather than glibc's malloc: see engine/Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs piped to files stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        #[cfg(feature = "local")]
        Command::Generate(args) => generate::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Bench(command) => bench::run(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
