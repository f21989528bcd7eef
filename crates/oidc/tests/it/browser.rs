//! A scripted browser: keeps cookies (as a browser would for this origin), does not follow
//! redirects, and reads forms out of the provider's pages.

use std::collections::HashMap;
use std::sync::Mutex;

/// One HTML form of a page.
#[derive(Debug, Clone)]
pub struct HtmlForm {
    pub action: String,
    /// Hidden inputs, in order.
    pub hidden: Vec<(String, String)>,
}

/// An answer from the server.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no redirect: {} {}", self.status, self.body))
    }

    /// The query of the redirect.
    pub fn redirect_query(&self) -> HashMap<String, String> {
        url::Url::parse(self.location())
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect()
    }

    /// Every form of the page.
    pub fn forms(&self) -> Vec<HtmlForm> {
        let mut forms = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(start) = rest.find("<form") {
            let end = rest[start..]
                .find("</form>")
                .map_or(rest.len(), |e| start + e);
            let html = &rest[start..end];
            let action = attribute(html, "action").unwrap_or_default();
            let mut hidden = Vec::new();
            let mut inputs = html;
            while let Some(i) = inputs.find("<input") {
                let tag_end = inputs[i..].find('>').map_or(inputs.len(), |e| i + e);
                let tag = &inputs[i..tag_end];
                if attribute(tag, "type").as_deref() == Some("hidden") {
                    hidden.push((
                        attribute(tag, "name").unwrap(),
                        attribute(tag, "value").unwrap_or_default(),
                    ));
                }
                inputs = &inputs[tag_end..];
            }
            forms.push(HtmlForm { action, hidden });
            rest = &rest[end..];
        }
        forms
    }

    /// The form posting to a URL ending in `suffix`.
    pub fn form(&self, suffix: &str) -> HtmlForm {
        self.forms()
            .into_iter()
            .find(|f| f.action.ends_with(suffix))
            .unwrap_or_else(|| panic!("no form for {suffix} in {} {}", self.status, self.body))
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&#60;", "<")
        .replace("&gt;", ">")
        .replace("&#62;", ">")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = start + tag[start..].find('"')?;
    Some(unescape(&tag[start..end]))
}

/// The browser.
pub struct Browser {
    client: reqwest::Client,
    cookies: Mutex<HashMap<String, String>>,
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Mutex::new(HashMap::new()),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.to_owned());
    }

    pub fn clear_cookies(&self) {
        self.cookies.lock().unwrap().clear();
    }

    fn cookie_header(&self) -> Option<String> {
        let cookies = self.cookies.lock().unwrap();
        (!cookies.is_empty()).then(|| {
            cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    async fn send(&self, mut request: reqwest::RequestBuilder) -> Page {
        if let Some(c) = self.cookie_header() {
            request = request.header("cookie", c);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for set in headers.get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attrs) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let mut cookies = self.cookies.lock().unwrap();
            if attrs.contains("Max-Age=0") || value.is_empty() {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status,
            headers,
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        self.send(self.client.get(url)).await
    }

    pub async fn post(&self, url: &str, fields: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(
            self.client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }

    /// Submits `form` with its hidden fields and `extra`.
    pub async fn submit(&self, form: &HtmlForm, extra: &[(&str, &str)]) -> Page {
        let mut fields: Vec<(&str, &str)> = form
            .hidden
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        fields.extend_from_slice(extra);
        self.post(&form.action, &fields).await
    }
}
