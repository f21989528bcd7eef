// What the relying-party scripts share: reading their input, and a scripted browser.

/** The value of environment variable `name`; an error if it is not set. */
export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

/** A scripted browser: keeps cookies by hand and never follows redirects. */
export class Browser {
  constructor() {
    this.cookies = new Map();
  }
  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  absorb(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      if (value === '' || attrs.some((a) => a.trim() === 'Max-Age=0')) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
  async send(url, init) {
    const r = await fetch(url, { redirect: 'manual', ...init, headers: { cookie: this.header(), ...init.headers } });
    this.absorb(r);
    return { status: r.status, location: r.headers.get('location'), body: await r.text() };
  }
  get(url) {
    return this.send(url, { headers: {} });
  }
  post(url, fields) {
    return this.send(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
  }
}

/** HTML entities of attribute values, decoded. */
const unescape = (s) =>
  s.replaceAll('&quot;', '"').replaceAll('&#34;', '"').replaceAll('&#39;', "'")
    .replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&');

/** The form posting to `suffix`, with its hidden inputs. */
export function form(html, suffix) {
  for (const match of html.matchAll(/<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/g)) {
    const action = unescape(match[1]);
    if (!action.endsWith(suffix)) continue;
    const fields = {};
    for (const input of match[2].matchAll(/<input([^>]*)>/g)) {
      const attr = (name) => {
        const m = input[1].match(new RegExp(` ${name}="([^"]*)"`));
        return m ? unescape(m[1]) : undefined;
      };
      if (attr('type') === 'hidden') fields[attr('name')] = attr('value') ?? '';
    }
    return { action, fields };
  }
  throw new Error(`no form for ${suffix} in: ${html.slice(0, 400)}`);
}
