//! A stage: its lock, who waits in front of it, its transition and its fence counter.
//!
//! [`rules`] decides (pure functions over plain data, configured by a [`policy::StagePolicy`]);
//! [`actor`] owns one stage's (one lane's) state and answers the pipeline actor's questions
//! with those decisions; [`words`] says why an execution waits, in words.

pub mod actor;
pub mod policy;
pub mod rules;
pub mod words;
