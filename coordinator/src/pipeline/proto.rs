//! Conversions between the pipeline model and its `baton.v1` protobuf form.
