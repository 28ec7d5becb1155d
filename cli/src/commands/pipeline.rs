//! `baton pipeline apply|validate|list|get`: pipeline definitions.

use std::path::{Path, PathBuf};

use baton_proto::v1::{GetPipelineRequest, ListPipelinesRequest, PutPipelineRequest};
use serde::Serialize;

use super::Ctx;
use crate::error::CliError;
use crate::output::{Table, emit, emit_json, format_ago, now_ms, opt_ms};
use crate::views::PipelineSummaryView;

/// Reads a pipeline file, with a friendly error.
pub fn read_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|err| CliError::file("read", path, &err))
}

#[derive(Serialize)]
struct Applied {
    file: String,
    name: String,
    version: u64,
    changed: bool,
}

/// `pipeline apply FILE...`: stores each file's definition (PutPipeline).
pub async fn apply(ctx: &Ctx, files: &[PathBuf]) -> Result<(), CliError> {
    let texts = files
        .iter()
        .map(|f| read_file(f).map(|t| (f, t)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut api = ctx.connect().await?;
    let mut applied = Vec::new();
    for (file, text) in texts {
        let source_name = file.display().to_string();
        let reply = api
            .client
            .put_pipeline(PutPipelineRequest {
                definition_yaml: text,
                source_name: source_name.clone(),
            })
            .await
            .map_err(|s| api.error(s))?
            .into_inner();
        let (name, version) = reply
            .pipeline
            .map(|p| (p.name, p.version))
            .unwrap_or_default();
        applied.push(Applied {
            file: source_name,
            name,
            version,
            changed: reply.changed,
        });
    }
    if ctx.json() {
        return emit_json(&applied);
    }
    let mut table = Table::new(["PIPELINE", "VERSION", "CHANGED", "FILE"]);
    for a in &applied {
        let changed = if a.changed { "yes" } else { "no (identical)" };
        table.row([
            a.name.clone(),
            a.version.to_string(),
            changed.into(),
            a.file.clone(),
        ]);
    }
    emit(&table.render())
}

#[derive(Serialize)]
struct Validated {
    file: String,
    ok: bool,
    pipeline: Option<String>,
    stages: Option<usize>,
    error: Option<String>,
}

/// `pipeline validate FILE...`: parses locally, no server. Fails if any file is invalid.
pub fn validate(ctx: &Ctx, files: &[PathBuf]) -> Result<(), CliError> {
    let mut results = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let outcome = read_file(file).and_then(|text| {
            baton_coordinator::pipeline::parse_pipeline_file(&name, &text)
                .map_err(|err| CliError::msg(err.to_string()))
        });
        results.push(match outcome {
            Ok(spec) => Validated {
                file: name,
                ok: true,
                pipeline: Some(spec.name),
                stages: Some(spec.stages.len()),
                error: None,
            },
            Err(err) => Validated {
                file: name,
                ok: false,
                pipeline: None,
                stages: None,
                error: Some(err.to_string()),
            },
        });
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    if ctx.json() {
        emit_json(&results)?;
    } else {
        for r in &results {
            match (&r.pipeline, r.stages, &r.error) {
                (Some(p), Some(n), _) => {
                    let plural = if n == 1 { "" } else { "s" };
                    emit(&format!(
                        "{}: ok (pipeline {p}, {n} stage{plural})\n",
                        r.file
                    ))?;
                }
                (_, _, err) => eprintln!("error: {}", err.as_deref().unwrap_or("invalid")),
            }
        }
    }
    if failed > 0 {
        Err(CliError::AlreadyReported)
    } else {
        Ok(())
    }
}

/// `pipeline list`: every pipeline's name, version and stage count.
pub async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let reply = api
        .client
        .list_pipelines(ListPipelinesRequest {})
        .await
        .map_err(|s| api.error(s))?
        .into_inner();
    let views: Vec<PipelineSummaryView> = reply
        .pipelines
        .iter()
        .map(|p| PipelineSummaryView {
            name: p.name.clone(),
            version: p.version,
            stage_count: p.stage_count,
            updated_at_ms: opt_ms(p.updated_at_ms),
        })
        .collect();
    if ctx.json() {
        return emit_json(&views);
    }
    if views.is_empty() {
        return emit("No pipelines yet. Add one with: baton pipeline apply FILE\n");
    }
    let now = now_ms();
    let mut table = Table::new(["PIPELINE", "VERSION", "STAGES", "UPDATED"]);
    for v in &views {
        table.row([
            v.name.clone(),
            v.version.to_string(),
            v.stage_count.to_string(),
            format_ago(v.updated_at_ms.unwrap_or(0), now),
        ]);
    }
    emit(&table.render())
}

#[derive(Serialize)]
struct PipelineView {
    name: String,
    version: u64,
    updated_at_ms: Option<i64>,
    definition_yaml: String,
}

/// `pipeline get NAME`: the stored YAML (or JSON with name and version).
pub async fn get(ctx: &Ctx, name: &str) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let p = api
        .client
        .get_pipeline(GetPipelineRequest {
            name: name.to_string(),
        })
        .await
        .map_err(|s| api.error_or(s, format!("pipeline '{name}' not found")))?
        .into_inner();
    if ctx.json() {
        return emit_json(&PipelineView {
            name: p.name,
            version: p.version,
            updated_at_ms: opt_ms(p.updated_at_ms),
            definition_yaml: p.definition_yaml,
        });
    }
    let mut yaml = p.definition_yaml;
    if !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    emit(&yaml)
}
