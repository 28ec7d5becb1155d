//! Baton's layered settings, shared by `baton-coordinator`, `baton-worker` and `baton`.
//!
//! A binary declares its settings once with [`settings!`]: each field's type, default, doc and
//! `BATON_*` variable. From that one declaration come the config struct (with `Default`), its
//! flags (`--lease`, with the default in `--help`), its environment variables and its TOML keys.
//! [`load`] layers them: **flags > environment > file (`--config FILE`) > defaults**, and every
//! error names where the bad value came from (`--lease`, `BATON_LEASE`, `baton.toml:3`).
//!
//! This crate never binds a port or opens a connection; `tls` only reads and checks PEM files.

mod layers;
mod setting;
pub mod tls;

pub use layers::{ConfigError, Loaded, Origin, Spec, load, load_from};
pub use setting::{Setting, parse_bytes, show_bytes};

/// A settings struct made by [`settings!`].
pub trait Settings: Default + Sized {
    /// Every setting, in declaration order.
    fn specs() -> Vec<Spec>;
    /// Parses `text` into the setting `key`.
    fn set(&mut self, key: &str, text: &str) -> Result<(), String>;
    /// The current value of `key` as text (a secret shows as `<redacted>`).
    fn show(&self, key: &str) -> String;
}

/// Declares a settings struct: one line per field is all that adding a setting takes.
///
/// ```ignore
/// baton_settings::settings! {
///     /// How a coordinator runs.
///     pub struct CoordinatorConfig {
///         /// How long a silent worker keeps its jobs. Default: 15 s.
///         lease: Duration = Duration::from_secs(15), env "BATON_LEASE";
///         /// Token workers must present. Default: none.
///         worker_token: String = String::new(), env "BATON_WORKER_TOKEN", secret;
///     }
/// }
/// ```
/// The flag is the field name with `-` for `_`, the TOML key is the field name.
#[macro_export]
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr, env $env:literal $(, $secret:ident)? ;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $crate::Settings for $name {
            fn specs() -> Vec<$crate::Spec> {
                vec![ $( $crate::Spec {
                    key: stringify!($field),
                    env: $env,
                    doc: concat!($($doc, "\n"),*),
                    repeated: <$ty as $crate::Setting>::REPEATED,
                    secret: $crate::settings!(@secret $($secret)?),
                }, )* ]
            }

            fn set(&mut self, key: &str, text: &str) -> Result<(), String> {
                match key {
                    $( stringify!($field) => {
                        self.$field = <$ty as $crate::Setting>::parse_setting(text)?;
                        Ok(())
                    } )*
                    _ => Err(format!("unknown setting `{key}`")),
                }
            }

            fn show(&self, key: &str) -> String {
                match key {
                    $( stringify!($field) => {
                        if $crate::settings!(@secret $($secret)?) {
                            $crate::redacted(&<$ty as $crate::Setting>::show_setting(&self.$field))
                        } else {
                            <$ty as $crate::Setting>::show_setting(&self.$field)
                        }
                    } )*
                    _ => String::new(),
                }
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut s = f.debug_struct(stringify!($name));
                $( s.field(stringify!($field), &<Self as $crate::Settings>::show(self, stringify!($field))); )*
                s.finish()
            }
        }
    };
    (@secret secret) => { true };
    (@secret) => { false };
}

/// How a secret is shown in `Debug`, `--help` and logs: never its value.
pub fn redacted(value: &str) -> String {
    if value.is_empty() {
        "none".to_string()
    } else {
        "<redacted>".to_string()
    }
}

/// Compares two secrets in time that does not depend on where they first differ.
pub fn secrets_match(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    diff == 0
}
