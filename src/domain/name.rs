//! Names: of event types and of organizations.

use std::{borrow::Cow, fmt};

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        RefOr,
        schema::{ObjectBuilder, Schema, Type},
    },
};

use super::{MAX_NAME_CHARS, contains_nul, is_event_type};

/// A name: 1 to 255 characters, not blank, without U+0000 (Postgres text
/// cannot hold it). Deserializing checks it, so a request carrying a bad
/// name is refused where it is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

/// Why a text is not a [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {MAX_NAME_CHARS} characters, not blank, without NUL (U+0000)")]
pub struct InvalidName;

impl Name {
    pub fn parse(text: impl Into<String>) -> Result<Self, InvalidName> {
        let text = text.into();
        // The shape event types and the patterns selecting them share.
        if !is_event_type(&text) || contains_nul(&text) {
            return Err(InvalidName);
        }
        Ok(Self(text))
    }

    /// Without leading or trailing white space: still a name, since a name
    /// is not blank.
    pub fn trimmed(self) -> Self {
        match self.0.trim() {
            trimmed if trimmed.len() == self.0.len() => self,
            trimmed => Self(trimmed.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Name::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The same rules, for clients and contract tests.
impl PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_NAME_CHARS))
            .pattern(Some(r"^[^\x00]*[^\s\x00][^\x00]*$"))
            .description(Some("1 to 255 characters, not blank, without U+0000"))
            .into()
    }
}

impl ToSchema for Name {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_to_255_characters_not_blank_without_nul() {
        for good in [
            "a",
            "order.created",
            " padded ",
            &"é".repeat(MAX_NAME_CHARS),
        ] {
            assert_eq!(
                Name::parse(good).map(Name::into_string),
                Ok(good.to_owned())
            );
        }
        for bad in [
            "",
            "   ",
            "\t\n",
            "a\0b",
            "\0",
            &"x".repeat(MAX_NAME_CHARS + 1),
        ] {
            assert_eq!(Name::parse(bad), Err(InvalidName), "{bad:?}");
        }
    }

    #[test]
    fn a_name_read_from_json_is_checked() {
        let name: Name = serde_json::from_str(r#""acme""#).expect("a name");
        assert_eq!(name.as_str(), "acme");
        for bad in [r#""""#, r#"" ""#, r#""a\u0000""#, "5"] {
            assert!(serde_json::from_str::<Name>(bad).is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_string(&name).expect("JSON"), r#""acme""#);
    }

    #[test]
    fn trimming_keeps_a_name() {
        let name = Name::parse("  acme \n").expect("a name").trimmed();
        assert_eq!(name.as_str(), "acme");
    }
}
