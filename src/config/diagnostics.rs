//! Errors with their key paths, and the files a config names (read once, located in errors).

use super::*;

impl Compiler {
    pub(super) fn err(&mut self, p: KeyPath, m: impl std::fmt::Display) {
        self.errors.push((p, m.to_string()));
    }

    /// Resolves a path relative to the config's directory, checks it exists and folds its
    /// contents into the version hash.
    pub(super) fn file(&mut self, p: KeyPath, name: &str) -> Option<(PathBuf, Vec<u8>)> {
        let full = self.dir.join(name);
        match std::fs::read(&full) {
            Ok(bytes) => {
                self.hasher.update(&bytes);
                self.files.push(full.clone());
                Some((full, bytes))
            }
            Err(e) => {
                self.err(p, format!("cannot read {}: {e}", full.display()));
                None
            }
        }
    }

    /// Reads and parses another TOML file the config names (the API key file, SigV4
    /// credentials). Its errors point into that file, at FILE:LINE:COL of their own.
    pub(super) fn side_file<T: serde::de::DeserializeOwned>(
        &mut self,
        p: KeyPath,
        name: &str,
    ) -> Option<(T, SideFile)> {
        let (path, bytes) = self.file(p, name)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let side = SideFile { locator: Locator::new(&text), path };
        match toml::from_str(&text) {
            Ok(v) => Some((v, side)),
            Err(e) => {
                let (line, col) = e.span().map(|s| side.locator.line_col(s.start)).unwrap_or((1, 1));
                let message = e.message().trim().to_string();
                self.other_errors.push(ConfigError { file: side.path, line, col, message });
                None
            }
        }
    }

    pub(super) fn side_error(&mut self, side: &SideFile, kp: &KeyPath, message: String) {
        let (line, col) = side.locator.locate(kp);
        self.other_errors.push(ConfigError { file: side.path.clone(), line, col, message });
    }

    /// Reads a JSON or YAML document the config names (schemas, OpenAPI documents); errors
    /// point into that file.
    pub(super) fn data_file(&mut self, p: KeyPath, name: &str) -> Option<serde_json::Value> {
        let (path, bytes) = self.file(p, name)?;
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        let parsed = if yaml {
            serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(&bytes).map(crate::openapi::yaml_to_json).map_err(|e| {
                let (line, col) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
                (line, col, e.to_string())
            })
        } else {
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| (e.line(), e.column(), e.to_string()))
        };
        match parsed {
            Ok(v) => Some(v),
            Err((line, col, message)) => {
                self.other_errors.push(ConfigError { file: path, line, col, message });
                None
            }
        }
    }
}
