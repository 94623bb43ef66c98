//! gemctl: deploys one app container and one PostgreSQL container onto a Docker host
//! in numbered generations, from a YAML spec kept in git.
//!
//! The pure core — [`spec`], [`observed`], [`plan`] — decides; the shell around it
//! observes the engine ([`observe`]) and the records under the storage root
//! ([`state`], the one module that reads and writes them), carries plans out
//! ([`execute`], step handlers grouped by subject) and talks to the operator
//! ([`cli`], one file per command with its printing). `plan` is split by kind of
//! change (bootstrap, upgrade, rollback, restore, repair, prune), with `Builder`
//! the one place that emits steps. The front door is [`front`] (pure: its slots
//! and the HAProxy configuration) and [`front_api`] (its runtime socket).

pub mod audit;
pub mod backup;
pub mod cli;
pub mod copy;
pub mod data_copy;
pub mod desired;
pub mod docker;
pub mod engine;
pub mod engine_endpoint;
pub mod env_file;
pub mod error;
pub mod execute;
pub mod front;
pub mod front_api;
pub mod git;
pub mod health;
pub mod incident;
pub mod labels;
pub mod lock;
pub mod notify;
pub mod observe;
pub mod observed;
pub mod pg_direct;
pub mod plan;
pub mod port_holder;
pub mod repair;
pub mod report;
pub mod saved_plan;
pub mod settings;
pub mod spec;
pub mod spec_error;
pub mod state;
pub mod status;
pub mod stream;
pub mod throwaway;
pub mod version;
