//! k3s's own configuration files, read the way k3s reads them, so that edgewire can tell
//! when they set something edgewire also sets.
//!
//! k3s (pkg/configfilearg) reads `K3S_CONFIG_FILE`, else `--config/-c`, else
//! `/etc/rancher/k3s/config.yaml`, then every `*.yaml`/`*.yml` in `config.yaml.d/` in name
//! order. Each top-level key is a flag name; a later file replaces a key, `key+:` appends to
//! it. The result is inserted *before* the command-line flags: a command-line scalar
//! overrides the file, a command-line list flag (`node-ip`, `tls-san`, `node-label`, …) is
//! appended to the file's list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// The default location, as in k3s.
pub const DEFAULT_PATH: &str = "/etc/rancher/k3s/config.yaml";

#[derive(Debug, thiserror::Error)]
pub enum K3sConfigError {
    #[error("reading k3s config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("k3s config {path}: not valid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("k3s config {path}: the top level must be a mapping of flag names to values")]
    NotAMapping { path: PathBuf },
}

/// One key's merged value and the file that last set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub values: Vec<String>,
    pub file: PathBuf,
}

/// The merged settings of config.yaml and its drop-ins, by canonical flag name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K3sFileConfig {
    /// The files that existed and were read, in order.
    pub files: Vec<PathBuf>,
    settings: BTreeMap<String, Setting>,
}

impl K3sFileConfig {
    pub fn get(&self, flag: &str) -> Option<&Setting> {
        self.settings.get(flag)
    }
}

/// The long name of a k3s flag given by a one-letter alias; other names are returned as is.
pub fn canonical_flag(name: &str) -> &str {
    match name {
        "i" => "node-ip",
        "s" => "server",
        "t" => "token",
        "c" => "config",
        "d" => "data-dir",
        "o" => "write-kubeconfig",
        other => other,
    }
}

/// Which config file k3s will read: `K3S_CONFIG_FILE` (passed as `env_value`), else the
/// value of `--config`/`-c` in `extra_args`, else the default.
pub fn config_path(env_value: Option<&str>, extra_config_flag: Option<&str>) -> PathBuf {
    match (env_value.filter(|v| !v.is_empty()), extra_config_flag) {
        (Some(v), _) => PathBuf::from(v),
        (None, Some(v)) => PathBuf::from(v),
        (None, None) => PathBuf::from(DEFAULT_PATH),
    }
}

/// Reads `path` and `path.d/*.yaml|yml`. Missing files are not an error (k3s ignores them).
pub fn load(path: &Path) -> Result<K3sFileConfig, K3sConfigError> {
    let mut files = Vec::new();
    if path.is_file() {
        files.push(path.to_path_buf());
    }
    let mut dropin_dir = path.as_os_str().to_owned();
    dropin_dir.push(".d");
    let dropin_dir = PathBuf::from(dropin_dir);
    if let Ok(entries) = std::fs::read_dir(&dropin_dir) {
        let mut dropins: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml")
                })
            })
            .collect();
        dropins.sort();
        files.extend(dropins);
    }
    let mut config = K3sFileConfig::default();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| K3sConfigError::Read {
            path: file.clone(),
            source,
        })?;
        merge(&mut config.settings, file, &text)?;
    }
    config.files = files;
    Ok(config)
}

fn merge(
    settings: &mut BTreeMap<String, Setting>,
    file: &Path,
    text: &str,
) -> Result<(), K3sConfigError> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| K3sConfigError::Yaml {
        path: file.to_path_buf(),
        message: e.to_string(),
    })?;
    let hash = match docs.into_iter().next() {
        None | Some(Yaml::Null) => return Ok(()),
        Some(Yaml::Hash(h)) => h,
        Some(_) => {
            return Err(K3sConfigError::NotAMapping {
                path: file.to_path_buf(),
            })
        }
    };
    for (k, v) in hash {
        let Some(key) = scalar(&k) else { continue };
        let (key, append) = match key.strip_suffix('+') {
            Some(k) => (k.to_string(), true),
            None => (key, false),
        };
        let key = canonical_flag(&key).to_string();
        let values = match v {
            Yaml::Array(items) => items.iter().filter_map(scalar).collect(),
            other => scalar(&other).into_iter().collect(),
        };
        match settings.get_mut(&key) {
            Some(existing) if append => {
                existing.values.extend(values);
                existing.file = file.to_path_buf();
            }
            _ => {
                settings.insert(
                    key,
                    Setting {
                        values,
                        file: file.to_path_buf(),
                    },
                );
            }
        }
    }
    Ok(())
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        Yaml::Null => Some(String::new()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ew-k3scfg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn merges_dropins_like_k3s() {
        let d = tmpdir("merge");
        let main = d.join("config.yaml");
        std::fs::write(&main, "node-ip: 192.168.0.129\ntls-san:\n  - a.example\nwrite-kubeconfig-mode: \"0644\"\ni: 1.1.1.1\n")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(d.join("config.yaml.d")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            d.join("config.yaml.d/10-san.yaml"),
            "tls-san+:\n  - b.example\ndebug: true\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            d.join("config.yaml.d/20-iface.yml"),
            "flannel-iface: eth0\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            d.join("config.yaml.d/30-ignored.txt"),
            "flannel-iface: nope\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c = load(&main).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.files.len(), 3);
        // `i:` is node-ip's alias and, coming later, replaces it.
        assert_eq!(
            c.get("node-ip").map(|s| s.values.clone()),
            Some(vec!["1.1.1.1".to_string()])
        );
        assert_eq!(
            c.get("tls-san").map(|s| s.values.clone()),
            Some(vec!["a.example".into(), "b.example".into()])
        );
        let iface = c
            .get("flannel-iface")
            .cloned()
            .unwrap_or_else(|| panic!("no flannel-iface"));
        assert_eq!(iface.values, vec!["eth0"]);
        assert!(iface.file.ends_with("config.yaml.d/20-iface.yml"));
        assert_eq!(
            c.get("debug").map(|s| s.values.clone()),
            Some(vec!["true".to_string()])
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn missing_is_empty_and_broken_is_an_error() {
        let d = tmpdir("broken");
        assert_eq!(
            load(&d.join("none.yaml")).map(|c| c.files.len()).ok(),
            Some(0)
        );
        let f = d.join("config.yaml");
        std::fs::write(&f, "node-ip: [unclosed\n").unwrap_or_else(|e| panic!("{e}"));
        let e = load(&f).unwrap_err().to_string();
        assert!(
            e.contains("config.yaml") && e.contains("not valid YAML"),
            "{e}"
        );
        std::fs::write(&f, "- a\n- b\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(load(&f), Err(K3sConfigError::NotAMapping { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn path_precedence() {
        assert_eq!(
            config_path(Some("/e.yaml"), Some("/c.yaml")),
            PathBuf::from("/e.yaml")
        );
        assert_eq!(
            config_path(Some(""), Some("/c.yaml")),
            PathBuf::from("/c.yaml")
        );
        assert_eq!(config_path(None, None), PathBuf::from(DEFAULT_PATH));
    }
}
