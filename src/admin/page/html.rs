//! The small pieces every part of the page is written with: the one escaping function, the
//! check that lets only http(s) URLs into an `href`, times for people, the usage bar, and the
//! inline style and script with the `Content-Security-Policy` that allows exactly them (by
//! hash: the page has no other script or style, and no `style` attribute, so the policy can
//! forbid everything else).

use std::fmt::{self, Write as _};
use std::sync::OnceLock;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::HeaderValue;

use crate::status::{Health, Time};

/// Text made safe for HTML, both as element text and as a quoted attribute value: `&`, `<`,
/// `>`, `"` and `'` become character references. Every value on the page goes through it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Esc<'a>(pub(super) &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let mut plain = 0;
        for (i, b) in text.bytes().enumerate() {
            let reference = match b {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&text[plain..i])?;
            f.write_str(reference)?;
            plain = i + 1;
        }
        f.write_str(&text[plain..])
    }
}

/// `url` when it may be a link: `http://` or `https://` and nothing that could end the
/// attribute or hide a scheme (spaces, controls). Anything else is shown as text, not linked.
pub(super) fn http_link(url: &str) -> Option<&str> {
    let lower = url
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let scheme_ok = lower.starts_with("https://") || lower.starts_with("http://");
    let clean = !url.chars().any(|c| c.is_whitespace() || c.is_control());
    (scheme_ok && clean).then_some(url)
}

/// The word for a health, which is also its CSS class.
pub(super) fn health_word(health: Health) -> &'static str {
    match health {
        Health::Ok => "ok",
        Health::Degraded => "degraded",
        Health::Failing => "failing",
    }
}

/// `<time>` of `at`: relative to `now` for reading at a glance ("3m ago", "in 52m"), the
/// RFC 3339 time in `datetime` and as its tooltip.
pub(super) fn time(out: &mut String, at: Time, now: SystemTime) {
    let exact = humantime::format_rfc3339_seconds(at.0);
    let relative = match now.duration_since(at.0) {
        Ok(ago) => format!("{} ago", short(ago.as_secs())),
        Err(ahead) => format!("in {}", short(ahead.duration().as_secs())),
    };
    let _ = write!(
        out,
        "<time datetime=\"{exact}\" title=\"{exact}\">{relative}</time>"
    );
}

/// `time`, or a dash without one.
pub(super) fn time_or_dash(out: &mut String, at: Option<Time>, now: SystemTime) {
    match at {
        Some(at) => time(out, at, now),
        None => out.push_str("<span class=\"none\">—</span>"),
    }
}

/// A duration in its largest whole unit: `42s`, `5m`, `3h`, `2d`.
fn short(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// A bar of `used` out of `limit` and the numbers (`—` for a use the backend cannot tell).
/// Its width is a class of 5 % steps: the policy forbids `style` attributes.
pub(super) fn bar(out: &mut String, used: Option<u32>, limit: u32) {
    let Some(used) = used else {
        let _ = write!(out, "<span class=\"bar\"></span> ?/{limit}");
        return;
    };
    let percent = if limit == 0 {
        100
    } else {
        (u64::from(used) * 100 / u64::from(limit)).min(100)
    };
    let level = match percent {
        0..=79 => "",
        80..=99 => " hi",
        _ => " full",
    };
    let step = percent.div_ceil(5) * 5;
    let _ = write!(
        out,
        "<span class=\"bar\"><i class=\"p{step}{level}\"></i></span> {used}/{limit}"
    );
}

/// The page's one script: filters the rows as one types (by the same text the server's `?q=`
/// matches, in `data-k`), keeps the filter in the address so a reload keeps it, and reloads
/// every 10 s unless the filter box has the focus. Without it the page is complete: the form
/// filters on the server and a `<noscript>` meta refresh reloads.
pub(super) const SCRIPT: &str = "(function(){var q=document.getElementById('q');\
if(!q)return;var rows=document.querySelectorAll('tbody tr');\
q.addEventListener('input',function(){var v=q.value.toLowerCase();\
for(var i=0;i<rows.length;i++){rows[i].hidden=v!==''&&rows[i].dataset.k.indexOf(v)<0;}\
var u=new URL(location.href);if(v){u.searchParams.set('q',q.value);}else{u.searchParams.delete('q');}\
u.searchParams.delete('page');history.replaceState(null,'',u);});\
setInterval(function(){if(document.activeElement!==q)location.reload();},10000);})();";

const STYLE: &str = "body{font:13px/1.4 system-ui,sans-serif;margin:14px;color:#1a1a1a;background:#fff}\
h1{font-size:18px;margin:0 0 4px}h1 a{color:inherit}h2{font-size:15px;margin:18px 0 6px}\
a{color:#0645ad}p{margin:4px 0}form{margin:8px 0}input{font:inherit;padding:2px 4px;width:22em}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;vertical-align:top;padding:3px 6px;border-bottom:1px solid #ddd}\
th{background:#eee;position:sticky;top:0}td.n{text-align:right}\
.sub,.none{color:#666;font-size:11px}code{font:12px ui-monospace,monospace}\
.hb{display:inline-block;min-width:60px;padding:0 5px;border-radius:3px;font-weight:700;text-align:center}\
.hb.ok{background:#e2f3e5;color:#0a4d1a;border:1px solid #0a4d1a}\
.hb.degraded{background:#f4c430;color:#000;border:1px dashed #000}\
.hb.failing{background:#a00018;color:#fff;border:1px solid #a00018}\
tr.failing td:first-child{border-left:4px solid #a00018}tr.degraded td:first-child{border-left:4px dashed #b08000}\
.s-failing{color:#a00018;font-weight:700}.s-refreshing{color:#7a5200}.s-none{color:#777}\
.bar{display:inline-block;width:70px;height:8px;border:1px solid #777;vertical-align:middle;background:#fff}\
.bar i{display:block;height:100%;background:#2e8b57}.bar i.hi{background:#d08a00}.bar i.full{background:#a00018}\
.err{max-width:32em}.nw{white-space:nowrap}";

/// The style, its width classes (`p0` to `p100`) included, and the policy header allowing it
/// and [`SCRIPT`] by hash: made once.
struct Assets {
    style: String,
    csp: HeaderValue,
}

fn assets() -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let mut style = STYLE.to_owned();
        for step in (0..=100).step_by(5) {
            let _ = write!(style, ".p{step}{{width:{step}%}}");
        }
        let hash = |text: &str| {
            STANDARD.encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
        };
        let policy = format!(
            "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            hash(&style),
            hash(SCRIPT)
        );
        Assets {
            style,
            csp: HeaderValue::from_str(&policy)
                .unwrap_or(HeaderValue::from_static("default-src 'none'")),
        }
    })
}

/// The inline stylesheet.
pub(super) fn style() -> &'static str {
    &assets().style
}

/// `Content-Security-Policy`: nothing but the inline [`style`] and [`SCRIPT`].
pub(super) fn csp() -> HeaderValue {
    assets().csp.clone()
}
