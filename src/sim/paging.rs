//! OData paging by `$top` and `$skip`, shared by the Defender and Graph collections: both APIs
//! answer with one page and an absolute `@odata.nextLink` on their own host, which is what the
//! proxy has to rewrite.

use serde_json::Value;

/// A collection request's paging parameters.
#[derive(Debug)]
pub(crate) struct Paging {
    top: usize,
    skip: usize,
    /// Every other parameter, as `&k=v` pairs exactly as received, carried into the next link
    /// byte for byte after `$top` and `$skip`, as the real APIs do.
    others: String,
}

/// A collection to page through.
pub(crate) enum Items<'a> {
    /// Every item, made beforehand.
    All(Vec<Value>),
    /// `total` items, item `i` made by the function: only the requested page is made (a
    /// collection request costs its page, not the whole collection).
    Lazy(usize, Box<dyn Fn(usize) -> Value + 'a>),
}

impl From<Vec<Value>> for Items<'_> {
    fn from(items: Vec<Value>) -> Self {
        Items::All(items)
    }
}

/// One page of a collection.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) items: Vec<Value>,
    /// Items in the whole collection (Graph's `@odata.count`).
    pub(crate) total: usize,
    /// Absolute link to the next page; `None` on the last.
    pub(crate) next_link: Option<String>,
}

impl Paging {
    /// Reads `$top` (default and at most `max_top`) and `$skip` from `query`, spelled `$top` or
    /// `%24top` alike. The error is the message of a 400.
    pub(crate) fn parse(query: Option<&str>, max_top: usize) -> Result<Paging, String> {
        let mut paging = Paging {
            top: max_top,
            skip: 0,
            others: String::new(),
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = form_urlencoded::parse(pair.as_bytes())
                .next()
                .unwrap_or_default();
            let slot = match &*key {
                "$top" => &mut paging.top,
                "$skip" => &mut paging.skip,
                _ => {
                    paging.others.push('&');
                    paging.others.push_str(pair);
                    continue;
                }
            };
            *slot = value
                .trim()
                .parse()
                .map_err(|_| format!("Invalid value '{value}' for {key}."))?;
        }
        if paging.top > max_top {
            return Err(format!(
                "Invalid $top value {}: the maximum page size is {max_top}.",
                paging.top
            ));
        }
        Ok(paging)
    }

    /// The requested page of `items`, with the link to the next one at `{base}{path}`.
    pub(crate) fn page(&self, base: &str, path: &str, items: Items<'_>) -> Page {
        let (total, page) = match items {
            Items::All(items) => (
                items.len(),
                items.into_iter().skip(self.skip).take(self.top).collect(),
            ),
            Items::Lazy(total, make) => {
                let end = self.skip.saturating_add(self.top).min(total);
                (total, (self.skip.min(end)..end).map(make).collect())
            }
        };
        let next = self.skip.saturating_add(self.top);
        let next_link = (self.top > 0 && next < total)
            .then(|| format!("{base}{path}?$top={}&$skip={next}{}", self.top, self.others));
        Page {
            items: page,
            total,
            next_link,
        }
    }
}

/// Whether `query` asks for `$count=true` (Graph's `@odata.count`).
pub(crate) fn wants_count(query: Option<&str>) -> bool {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .any(|(k, v)| k == "$count" && v.eq_ignore_ascii_case("true"))
}
