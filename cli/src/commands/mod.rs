//! One module per command group. Each command connects (if it needs the server), makes its
//! calls, and prints either a table or JSON according to `--output`.

pub mod execution;
pub mod fence;
pub mod logs;
pub mod pipeline;
pub mod policy;
pub mod state;
pub mod transition;
pub mod workers;

use crate::client::{Access, Api};
use crate::error::CliError;
use crate::output::OutputFormat;

/// What every command gets from the global flags.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `--addr` / `BATON_ADDR`.
    pub addr: String,
    /// `--output`.
    pub output: OutputFormat,
    /// `--token`, `--ca-file`, `--cert-file`, `--key-file`.
    pub access: Access,
}

impl Ctx {
    /// Connects to the coordinator named by `--addr`.
    pub async fn connect(&self) -> Result<Api, CliError> {
        Api::connect_with(&self.addr, &self.access).await
    }

    /// True for `--output json`.
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}
