// The subset of Markdown tunelab's reports use (headings, paragraphs, tables, lists, images, **bold**, `code`),
// rendered into DOM nodes with textContent only: nothing from a report is ever parsed as HTML.
"use strict";
(function () {
  function inline(parent, text) {
    const re = /(\*\*([^*]+)\*\*|`([^`]+)`|!\[([^\]]*)\]\(([^)]+)\)|\[([^\]]+)\]\(([^)]+)\))/g;
    let last = 0, m;
    while ((m = re.exec(text))) {
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      if (m[2] !== undefined) { const b = document.createElement("strong"); b.textContent = m[2]; parent.appendChild(b); }
      else if (m[3] !== undefined) { const c = document.createElement("code"); c.textContent = m[3]; parent.appendChild(c); }
      else if (m[5] !== undefined) parent.appendChild(image(m[4], m[5]));
      else { const a = document.createElement("span"); a.textContent = m[6]; parent.appendChild(a); }
      last = re.lastIndex;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  let resolveImage = (src) => src;
  function image(alt, src) {
    const img = document.createElement("img");
    img.alt = alt;
    img.src = resolveImage(src);
    return img;
  }

  function cells(line) {
    return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
  }

  function render(text, imageUrl) {
    resolveImage = imageUrl || ((s) => s);
    const root = document.createElement("div");
    root.className = "report";
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; ) {
      const line = lines[i];
      const h = /^(#{1,6})\s+(.*)$/.exec(line);
      if (h) { const e = document.createElement("h" + Math.min(h[1].length + 1, 6)); inline(e, h[2]); root.appendChild(e); i++; continue; }
      if (line.trim().startsWith("|") && i + 1 < lines.length && /^\s*\|?\s*:?-{3}/.test(lines[i + 1])) {
        const table = document.createElement("table"), head = table.createTHead().insertRow(), body = table.createTBody();
        for (const c of cells(line)) { const th = document.createElement("th"); inline(th, c); head.appendChild(th); }
        i += 2;
        while (i < lines.length && lines[i].trim().startsWith("|")) {
          const row = body.insertRow();
          for (const c of cells(lines[i])) { const td = row.insertCell(); inline(td, c); if (/^-?[\d.,]+%?$/.test(c)) td.className = "num"; }
          i++;
        }
        root.appendChild(table);
        continue;
      }
      if (/^\s*[-*]\s+/.test(line)) {
        const ul = document.createElement("ul");
        while (i < lines.length && /^\s*[-*]\s+/.test(lines[i])) { const li = document.createElement("li"); inline(li, lines[i].replace(/^\s*[-*]\s+/, "")); ul.appendChild(li); i++; }
        root.appendChild(ul);
        continue;
      }
      if (!line.trim()) { i++; continue; }
      const p = document.createElement("p");
      const para = [];
      while (i < lines.length && lines[i].trim() && !/^(#|\s*\||\s*[-*]\s)/.test(lines[i])) para.push(lines[i++]);
      if (!para.length) para.push(lines[i++]);
      inline(p, para.join(" "));
      root.appendChild(p);
    }
    return root;
  }

  window.Markdown = { render };
})();
