//! The message catalogues: Fluent `.ftl` files under `report/i18n/`, one
//! per language, compiled in so the binary needs nothing beside it.

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};

/// `--lang`: the languages a report can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    ZhTw,
}

impl Lang {
    /// Parses `en` or `zh-TW` (case-insensitive); the error lists both.
    pub fn parse(s: &str) -> Result<Lang, String> {
        match s.to_ascii_lowercase().as_str() {
            "en" => Ok(Lang::En),
            "zh-tw" => Ok(Lang::ZhTw),
            _ => Err(format!("--lang {s:?}: use zh-TW or en")),
        }
    }

    /// The BCP 47 tag, for `<html lang>`.
    pub fn tag(&self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhTw => "zh-TW",
        }
    }
}

/// One language's messages.
pub struct Catalog {
    bundle: FluentBundle<FluentResource>,
}

impl Catalog {
    /// The catalogue for `lang`. The `.ftl` files are part of the build and
    /// checked by the tests, so a parse error here is a build defect; it is
    /// still returned as an error naming the file rather than a panic.
    pub fn load(lang: Lang) -> Result<Catalog, String> {
        let (file, text) = match lang {
            Lang::En => ("i18n/en/report.ftl", include_str!("../i18n/en/report.ftl")),
            Lang::ZhTw => (
                "i18n/zh-TW/report.ftl",
                include_str!("../i18n/zh-TW/report.ftl"),
            ),
        };
        let resource = FluentResource::try_new(text.to_string())
            .map_err(|(_, errs)| format!("{file}: {errs:?}"))?;
        let id = lang
            .tag()
            .parse()
            .map_err(|e| format!("language tag {}: {e}", lang.tag()))?;
        let mut bundle = FluentBundle::new_concurrent(vec![id]);
        // No Unicode isolation marks around values: the HTML is escaped,
        // and the marks would end up in copied form answers.
        bundle.set_use_isolating(false);
        bundle
            .add_resource(resource)
            .map_err(|errs| format!("{file}: {errs:?}"))?;
        Ok(Catalog { bundle })
    }

    /// The message `id` with `args`; a missing message shows as its id, so
    /// a gap in a catalogue is visible rather than blank.
    pub fn msg(&self, id: &str, args: &[(&str, String)]) -> String {
        let Some(pattern) = self.bundle.get_message(id).and_then(|m| m.value()) else {
            return id.to_string();
        };
        let mut fa = FluentArgs::new();
        for (k, v) in args {
            match v.parse::<f64>() {
                Ok(n) if !v.is_empty() => fa.set(*k, FluentValue::from(n)),
                _ => fa.set(*k, FluentValue::from(v.clone())),
            }
        }
        let mut errors = Vec::new();
        self.bundle
            .format_pattern(pattern, Some(&fa), &mut errors)
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogues_have_the_same_messages() {
        let en = include_str!("../i18n/en/report.ftl");
        let zh = include_str!("../i18n/zh-TW/report.ftl");
        let ids = |t: &str| -> Vec<String> {
            let mut v: Vec<String> = t
                .lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with(' ') && l.contains(" ="))
                .filter_map(|l| l.split(" =").next().map(str::to_string))
                .collect();
            v.sort();
            v
        };
        assert_eq!(ids(en), ids(zh));
        for lang in [Lang::En, Lang::ZhTw] {
            let c = Catalog::load(lang).unwrap();
            assert_ne!(c.msg("title", &[]), "title");
        }
    }
}
