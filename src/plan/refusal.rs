//! A [`Refusal`]: the planner's answer when a human must look before gemctl acts,
//! every [`Problem`] with what was seen and what to do.

use serde::{Deserialize, Serialize};

/// Why the planner will not act: a human must look first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The project.
    pub project: String,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

/// One reason for a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The container concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// What was seen.
    pub seen: String,
    /// What to do about it.
    pub fix: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        writeln!(
            f,
            "refusing to act on project {}: {} problem{} need{} a human",
            self.project,
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" },
            if self.problems.len() == 1 { "s" } else { "" },
        )?;
        for p in &self.problems {
            writeln!(f, "  - {}", p.seen)?;
            writeln!(f, "    fix: {}", p.fix)?;
        }
        Ok(())
    }
}
