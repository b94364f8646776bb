//! Versioned D-Bus names. Bumping the `1` is the only way to break the wire contract.

/// Well-known bus name the daemon owns.
pub const BUS_NAME: &str = "org.inferd.Inferd1";
/// Object path of the main service object (also the `ObjectManager` of everything below it).
pub const OBJECT_PATH: &str = "/org/inferd/Inferd1";
/// Interface of the main service object.
pub const INTERFACE: &str = "org.inferd.Inferd1";
/// Parent of every request object (streaming generations and background jobs).
pub const REQUEST_PATH: &str = "/org/inferd/Inferd1/request";
/// Interface of request objects.
pub const REQUEST_INTERFACE: &str = "org.inferd.Inferd1.Request";
/// Parent of every model object.
pub const MODEL_PATH: &str = "/org/inferd/Inferd1/models";
/// Interface of model objects.
pub const MODEL_INTERFACE: &str = "org.inferd.Inferd1.Model";
/// Prefix of every typed error name.
pub const ERROR_PREFIX: &str = "org.inferd.Inferd1.Error";

/// The object path of model `name`: its name escaped as systemd's `sd_bus_path_encode` does
/// (ASCII letters and digits kept, every other byte `_xx` in hex, the empty name `_`), so any
/// name maps to one valid path and back.
pub fn model_path(name: &str) -> String {
    let mut p = format!("{MODEL_PATH}/");
    if name.is_empty() {
        p.push('_');
    }
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() {
            p.push(b as char);
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_paths_are_escaped_like_systemd_units() {
        assert_eq!(model_path("minilm"), "/org/inferd/Inferd1/models/minilm");
        assert_eq!(
            model_path("smollm2-fp32"),
            "/org/inferd/Inferd1/models/smollm2_2dfp32"
        );
        assert_eq!(model_path("a.b_c"), "/org/inferd/Inferd1/models/a_2eb_5fc");
        assert_eq!(model_path(""), "/org/inferd/Inferd1/models/_");
        for n in ["x y", "ünï", "a/b", "_"] {
            assert!(
                zbus::zvariant::ObjectPath::try_from(model_path(n)).is_ok(),
                "{n}"
            );
        }
    }
}
