//! The console's messages: Fluent `.ftl` files under `collector/console/i18n/`,
//! compiled in (an air-gapped collector needs nothing beside its binary).

use std::collections::BTreeMap;

use fluent_bundle::{FluentBundle, FluentResource};

/// The console's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    ZhTw,
    En,
}

impl Lang {
    pub fn tag(self) -> &'static str {
        match self {
            Lang::ZhTw => "zh-TW",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::ZhTw => Lang::En,
            Lang::En => Lang::ZhTw,
        }
    }

    /// From `?lang=`, else `Accept-Language`; Traditional Chinese unless
    /// English is asked for (the users are first Taiwanese agencies).
    pub fn choose(query: Option<&str>, accept: Option<&str>) -> Lang {
        let pick = |s: &str| match s.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "zh-tw" => Some(Lang::ZhTw),
            _ => None,
        };
        if let Some(l) = query.and_then(pick) {
            return l;
        }
        match accept {
            Some(a) if a.trim_start().to_ascii_lowercase().starts_with("en") => Lang::En,
            _ => Lang::ZhTw,
        }
    }

    fn source(self) -> &'static str {
        match self {
            Lang::ZhTw => include_str!("../../console/i18n/zh-TW/console.ftl"),
            Lang::En => include_str!("../../console/i18n/en/console.ftl"),
        }
    }
}

/// Every message of `lang`, by id, for the templates (`t["login-name"]`).
/// A message that does not format is shown by its id, never dropped.
pub fn messages(lang: Lang) -> BTreeMap<String, String> {
    messages_with(lang, &[])
}

/// [`messages`] with the Fluent arguments `args` (`$quiet`, …) given to
/// every message (a message ignores those it does not use).
pub fn messages_with(lang: Lang, args: &[(&str, u64)]) -> BTreeMap<String, String> {
    let mut fargs = fluent_bundle::FluentArgs::new();
    for (k, v) in args {
        fargs.set(*k, *v);
    }
    let mut out = BTreeMap::new();
    let Ok(resource) = FluentResource::try_new(lang.source().to_string()) else {
        return out;
    };
    let ids: Vec<String> = resource
        .entries()
        .filter_map(|e| match e {
            fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_string()),
            _ => None,
        })
        .collect();
    let Ok(langid) = lang.tag().parse() else {
        return out;
    };
    let mut bundle = FluentBundle::new(vec![langid]);
    bundle.set_use_isolating(false);
    if bundle.add_resource(resource).is_err() {
        return out;
    }
    for id in ids {
        let text = bundle
            .get_message(&id)
            .and_then(|m| m.value())
            .map(|p| {
                let mut errors = Vec::new();
                bundle
                    .format_pattern(p, Some(&fargs), &mut errors)
                    .into_owned()
            })
            .unwrap_or_else(|| id.clone());
        out.insert(id, text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogues_have_the_same_messages() {
        let zh = messages(Lang::ZhTw);
        let en = messages(Lang::En);
        assert!(zh.len() > 30);
        assert_eq!(zh.keys().collect::<Vec<_>>(), en.keys().collect::<Vec<_>>());
        assert_eq!(zh["login-submit"], "登入");
        assert_eq!(Lang::choose(Some("en"), None), Lang::En);
        assert_eq!(Lang::choose(None, Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(Lang::choose(None, None), Lang::ZhTw);
    }
}
