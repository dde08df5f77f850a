// A minimal DOM for running data_selection/reports/html/assets/report.js under node (tests only).
// usage: node report_js_dom.js REPORT_JS PAYLOAD_JSON  -> prints the rendered tree as JSON
"use strict";
const fs = require("fs");
class Node {
  constructor(tag, ns) { this.tag = tag; this.ns = ns || ""; this.attrs = {}; this.children = []; this._text = "";
                         this.parent = null; this.listeners = {}; }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; }
  get className() { return this.attrs.class || ""; }
  set className(v) { this.attrs.class = String(v); }
  get classList() { const n = this; return {add: (c) => { n.attrs.class = ((n.attrs.class || "") + " " + c).trim(); },
    remove: (c) => { n.attrs.class = (n.attrs.class || "").split(" ").filter((x) => x !== c).join(" "); },
    contains: (c) => (n.attrs.class || "").split(" ").includes(c)}; }
  set textContent(v) { this.children = []; this._text = String(v); }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  append(...kids) {
    for (const k of kids) {
      if (k instanceof Fragment) { for (const c of k.children) { c.parent = this; this.children.push(c); } k.children = []; }
      else if (k instanceof Node) { k.parent = this; this.children.push(k); }
      else { const t = new Node("#text"); t._text = String(k); t.parent = this; this.children.push(t); }
    }
  }
  replaceChildren(...kids) { this.children = []; this._text = ""; this.append(...kids); }
  remove() { if (this.parent) this.parent.children = this.parent.children.filter((c) => c !== this); }
  addEventListener(ev, fn) { (this.listeners[ev] = this.listeners[ev] || []).push(fn); }
  querySelectorAll() { return []; }
  scrollIntoView() {}
  get style() { return {}; }
  get value() {  // an input's typed value, else its attribute; a select: its first option's
    if (this._value !== undefined) return this._value;
    if (this.tag === "select") { const o = this.children.find((c) => c.tag === "option"); return o ? o.getAttribute("value") : ""; }
    return this.attrs.value || "";
  }
  set value(v) { this._value = String(v); }
  toJSON() { return {tag: this.tag, attrs: this.attrs, text: this._text, children: this.children}; }
}
class Fragment extends Node {}
const byId = {};
for (const id of ["nav", "sections", "browser"]) { byId[id] = new Node(id === "nav" ? "nav" : "div"); byId[id].attrs.id = id; }
const data = new Node("script"); data._text = fs.readFileSync(process.argv[3], "utf8");
byId["report-data"] = data;
function find(n, id) { if (n.attrs && n.attrs.id === id) return n; for (const c of n.children || []) { const f = find(c, id); if (f) return f; } return null; }
const body = new Node("body");
global.document = {
  getElementById: (id) => byId[id] || find(byId.sections, id) || find(byId.browser, id),
  createElement: (t) => new Node(t), createElementNS: (ns, t) => new Node(t, ns),
  createTextNode: (t) => { const n = new Node("#text"); n._text = String(t); return n; },
  createDocumentFragment: () => new Fragment("#fragment"), body,
};
global.window = global;
eval(fs.readFileSync(process.argv[2], "utf8"));
process.stdout.write(JSON.stringify({ready: body.getAttribute("data-ready"), sections: byId.sections, browser: byId.browser}));
