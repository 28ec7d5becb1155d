//! Size limits on one pipeline file, so that no client can make the coordinator hold or run
//! an unbounded definition. Pure: the caller passes the counts it knows.

use super::PipelineSpec;

/// How big a pipeline file may be.
#[derive(Debug, Clone, Copy)]
pub struct PipelineLimits {
    /// Most pipelines stored. Default: 1000.
    pub max_pipelines: u32,
    /// Most stages in one file. Default: 100.
    pub max_stages: u32,
    /// Most actions in one file, all stages together. Default: 500.
    pub max_actions: u32,
}

impl PipelineLimits {
    /// Checks `spec`; `stored` is how many pipelines exist, `is_new` whether this adds one.
    pub fn check(&self, spec: &PipelineSpec, stored: usize, is_new: bool) -> Result<(), String> {
        let stages = spec.stages.len();
        if stages > self.max_stages as usize {
            return Err(format!(
                "pipeline '{}' has {stages} stages; this coordinator allows at most {} (max_stages): split it, or raise max_stages",
                spec.name, self.max_stages
            ));
        }
        let actions: usize = spec.stages.iter().map(|s| s.actions.len()).sum();
        if actions > self.max_actions as usize {
            return Err(format!(
                "pipeline '{}' has {actions} actions; this coordinator allows at most {} per file (max_actions): split it, or raise max_actions",
                spec.name, self.max_actions
            ));
        }
        if is_new && stored >= self.max_pipelines as usize {
            return Err(format!(
                "this coordinator already stores {stored} pipelines, its limit (max_pipelines): cannot add '{}'",
                spec.name
            ));
        }
        Ok(())
    }
}
