//! A stage: its lock, who waits in front of it, its transition and its fence counter.
//!
//! [`rules`] decides (pure functions over plain data, configured by a [`policy::StagePolicy`]);
//! [`actor`] owns one stage's (one lane's) state and answers the pipeline actor's questions
//! with those decisions; [`why`] reads why an execution waits and [`words`] says it in words.

pub mod actor;
pub mod policy;
pub mod reentry;
pub mod rules;
pub mod why;
pub mod words;
