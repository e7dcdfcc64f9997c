//! From a scenario file to a scenario ready to build worlds from: read, parse, validate (the
//! pure schema in [`crate::scenario`]), then load the plugin libraries it names and check its
//! plugin models against them ([`crate::plugin`]). This sits above both, so the schema never
//! depends on the plugin host.

use std::path::Path;

use crate::scenario::{Scenario, ScenarioError, ScenarioErrors};

impl Scenario {
    /// Reads, parses and validates a scenario file, then loads the plugin libraries it names
    /// and checks its plugin models against them (see [`crate::plugin::check_scenario`]).
    pub fn load(file: &Path) -> Result<(Scenario, String), ScenarioErrors> {
        let source = std::fs::read_to_string(file)
            .map_err(|e| ScenarioErrors::from(ScenarioError::Io { file: file.to_path_buf(), message: e.to_string() }))?;
        let mut scenario = Scenario::parse(&source, file)?;
        crate::plugin::check_scenario(&mut scenario, file).map_err(|problems| ScenarioErrors::invalid(file, &source, problems))?;
        Ok((scenario, source))
    }
}
