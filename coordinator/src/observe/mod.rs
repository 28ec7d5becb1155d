//! Seeing what the coordinator does: Prometheus metrics, the web dashboard and its JSON API on
//! the HTTP port (`--http-addr`), and the gRPC request layer that feeds the metrics.
//!
//! Nothing here changes state except through the gRPC service's own methods.

pub mod grpc_layer;
pub mod http;
pub mod metrics;
pub mod readiness;

/// `EXECUTION_STATUS_IN_PROGRESS` without `prefix`, in the words DESIGN.md uses: `InProgress`.
pub fn enum_word(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .split('_')
        .map(|part| {
            let lower = part.to_ascii_lowercase();
            let mut chars = lower.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn enum_names_read_as_design_words() {
        assert_eq!(
            super::enum_word("EXECUTION_STATUS_IN_PROGRESS", "EXECUTION_STATUS_"),
            "InProgress"
        );
        assert_eq!(
            super::enum_word("WORKER_STATE_LOST", "WORKER_STATE_"),
            "Lost"
        );
    }
}
