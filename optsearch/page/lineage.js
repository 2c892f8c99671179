// The run page: everything is built from the JSON in #run-data; text goes in as text, never HTML.
"use strict";
const DATA = JSON.parse(document.getElementById("run-data").textContent);
const BY_ID = new Map(DATA.programs.map(p => [p.id, p]));
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") e.addEventListener("click", v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
const fit = x => (x === null || x === undefined) ? "-" : (x >= 0 ? "+" : "") + x.toFixed(4);
const num = x => (x === null || x === undefined) ? "-" : String(+x.toFixed(4));

function table(head, rows, onPick) {
  const t = el("table", {}, el("tr", {}, ...head.map(h => el("th", {}, h))));
  for (const r of rows) {
    const tr = el("tr", r.attrs || {}, ...r.cells.map(c => el("td", {}, c)));
    if (onPick) { tr.classList.add("pick"); tr.addEventListener("click", () => onPick(r.id)); }
    t.append(tr);
  }
  return t;
}

function header() {
  const c = DATA.counts;
  document.body.append(el("h1", {}, "optsearch run " + DATA.run),
    el("p", {}, `${c.evaluations} evaluations, ${c.programs} programs, ${c.children} children ` +
      `(${c.rejected} rejected, ${c.cache_hits} cache hits), ${c.restarts} restarts, ${Math.round(c.seconds)} s` +
      (DATA.finished ? `; finished: ${DATA.finished.reason}` : "; not finished") +
      (DATA.winner !== null ? `; winner #${DATA.winner}` : "")));
}

function chart() {
  document.body.append(el("h2", {}, "Fitness over evaluations (0 = tuned AdamW, higher is better)"));
  const pts = DATA.history;
  if (!pts.length) { document.body.append(el("p", {}, "no finished evaluations yet")); return; }
  const W = 900, H = 260, L = 60, B = 30, T = 10, R = 10;
  const ys = pts.flatMap(p => [p[1], p[2]]).filter(v => v !== null);
  let lo = Math.min(...ys), hi = Math.max(...ys);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const x0 = pts[0][0], x1 = Math.max(pts[pts.length - 1][0], x0 + 1);
  const X = x => L + (x - x0) / (x1 - x0) * (W - L - R), Y = y => T + (hi - y) / (hi - lo) * (H - T - B);
  const s = svg("svg", {width: W, height: H, id: "fitness-chart", role: "img"});
  s.append(svg("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#888"}),
           svg("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#888"}));
  for (let k = 0; k <= 4; k++) {
    const v = lo + (hi - lo) * k / 4;
    s.append(svg("text", {x: L - 4, y: Y(v) + 4, "text-anchor": "end", "font-size": 11}, fit(v)),
             svg("line", {x1: L, y1: Y(v), x2: W - R, y2: Y(v), stroke: "#eee"}));
  }
  s.append(svg("text", {x: L, y: H - 8, "font-size": 11}, String(x0)),
           svg("text", {x: W - R, y: H - 8, "font-size": 11, "text-anchor": "end"}, `${x1} evaluations`));
  const line = (k, color) => {
    const d = pts.filter(p => p[k] !== null).map((p, i) => (i ? "L" : "M") + X(p[0]).toFixed(1) + " " + Y(p[k]).toFixed(1));
    if (d.length) s.append(svg("path", {d: d.join(" "), stroke: color, fill: "none", "stroke-width": 2}));
  };
  line(2, "#9ab"); line(1, "#d50");
  document.body.append(s, el("div", {class: "legend"}, el("span", {style: "color:#d50"}, "— best"),
                                                       el("span", {style: "color:#9ab"}, "— population median")));
}

function hallOfFame() {
  document.body.append(el("h2", {}, "Hall of fame: the best program at each length that beats every shorter one"));
  const rows = DATA.hall_of_fame.map(e => ({id: e.id, attrs: e.winner ? {class: "winner"} : {},
    cells: [`#${e.id}` + (e.winner ? " (winner)" : ""), e.length, num(e.state_per_param), fit(e.fitness),
            fit(e.funnel_fitness), e.mutation || "warm start"]}));
  document.body.append(rows.length ? table(["program", "length", "state/param", "fitness", "funnel", "mutation"],
                                           rows, select) : el("p", {}, "no ranked program yet"));
}

function tree() {
  document.body.append(el("h2", {}, `Lineage of the best programs and the winner (click a node; larger: the best)`));
  const ids = new Set(DATA.tree), kids = new Map(), roots = [];
  for (const id of DATA.tree) {
    const p = BY_ID.get(id).parent;
    if (p !== null && ids.has(p)) { if (!kids.has(p)) kids.set(p, []); kids.get(p).push(id); } else roots.push(id);
  }
  const pos = new Map(); let row = 0, depthMax = 0;
  const place = (id, depth) => {     // leaves take rows in order; a parent sits at its first child's row
    depthMax = Math.max(depthMax, depth);
    const ch = kids.get(id) || [];
    if (!ch.length) { pos.set(id, [depth, row++]); return; }
    const first = row;
    for (const c of ch) place(c, depth + 1);
    pos.set(id, [depth, first]);
  };
  for (const r of roots) place(r, 0);
  const DX = 90, DY = 28, W = (depthMax + 1) * DX + 60, H = Math.max(row, 1) * DY + 20;
  const s = svg("svg", {width: W, height: H, id: "lineage-tree"});
  const at = id => { const [d, r] = pos.get(id); return [30 + d * DX, 20 + r * DY]; };
  const fits = DATA.tree.map(id => BY_ID.get(id).fitness).filter(v => v !== null);
  const lo = Math.min(...fits), hi = Math.max(...fits);
  const best = new Set(DATA.best);
  for (const [p, ch] of kids) for (const c of ch) {
    const [x1, y1] = at(p), [x2, y2] = at(c);
    s.append(svg("path", {class: "edge", d: `M${x1} ${y1} L${x1 + DX / 2} ${y2} L${x2} ${y2}`}));
  }
  for (const id of DATA.tree) {
    const p = BY_ID.get(id), [x, y] = at(id);
    const t = p.fitness === null || hi - lo < 1e-12 ? 0.5 : (p.fitness - lo) / (hi - lo);
    const color = p.fitness === null ? "#ccc" : `hsl(${Math.round(20 + 100 * t)}, 70%, 55%)`;
    const g = svg("g", {class: "node", "data-node": id, transform: `translate(${x},${y})`},
      svg("rect", {x: -10, y: -11, width: 60, height: 22, fill: "transparent"}),   // the whole label is clickable
      svg("circle", {r: best.has(id) ? 8 : 6, fill: color}),
      svg("text", {x: 10, y: 4}, `#${id}`),
      svg("title", {}, `#${id} ${p.mutation || "warm start"}, fitness ${fit(p.fitness)}`));
    g.addEventListener("click", () => select(id));
    s.append(g);
  }
  document.body.append(el("div", {class: "scroll"}, s), el("div", {id: "program"}, "click a node or a row"));
}

function select(id) {
  const p = BY_ID.get(id);
  document.querySelectorAll(".node.selected").forEach(n => n.classList.remove("selected"));
  const node = document.querySelector(`.node[data-node="${id}"]`);
  if (node) node.classList.add("selected");
  const box = document.getElementById("program");
  box.replaceChildren();
  const parent = p.parent === null ? "none (warm start)" : el("a", {class: "ref", onclick: () => select(p.parent)}, `#${p.parent}`);
  box.append(el("h3", {id: "program-title"}, `#${p.id}`),
    el("p", {}, `made by ${p.mutation || "warm start"} from `, parent,
      `; status ${p.status}, fitness ${fit(p.fitness)}` + (p.funnel_fitness !== null ? `, funnel ${fit(p.funnel_fitness)}` : "") +
      (p.eval_index !== null ? `, evaluation ${p.eval_index}` : "") + (p.reuses !== null ? `, reuses #${p.reuses}` : "")),
    el("pre", {id: "program-text"}, p.text));
  if (p.diff) {
    const d = el("pre", {id: "program-diff"});
    for (const line of p.diff.split("\n")) {
      const cls = line.startsWith("@@") ? "hunk" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "";
      d.append(el("span", cls ? {class: cls} : {}, line + "\n"));
    }
    box.append(el("p", {}, "what the mutation changed (canonical forms of the parent and this program):"), d);
  }
  box.scrollIntoView({block: "nearest"});
}

function funnel() {
  document.body.append(el("h2", {}, "Funnel: re-checked on larger and held-out tasks (the winner is chosen here)"));
  if (!DATA.funnel.length) { document.body.append(el("p", {}, "no program was re-checked")); return; }
  document.body.append(table(["program", "status", "funnel", "ranked", "search", "state/param", "length"],
    DATA.funnel.map(f => ({id: f.id, attrs: f.id === DATA.winner ? {class: "winner"} : {},
      cells: [`#${f.id}`, f.status, fit(f.funnel_fitness), fit(f.ranked), fit(f.fitness), num(f.state_per_param), f.length]})),
    select));
}

function allPrograms() {
  document.body.append(el("h2", {}, `Every program (${DATA.programs.length})`));
  const t = el("table", {id: "all-programs"}, el("tr", {}, ...["program", "parent", "mutation", "status", "fitness", "text"].map(h => el("th", {}, h))));
  for (const p of DATA.programs) {
    t.append(el("tr", {}, el("td", {}, el("a", {class: "ref", onclick: () => select(p.id)}, `#${p.id}`)),
      el("td", {}, p.parent === null ? "-" : `#${p.parent}`), el("td", {}, p.mutation || "warm start"),
      el("td", {}, p.status), el("td", {}, fit(p.fitness)),
      el("td", {style: "text-align:left"}, el("details", {}, el("summary", {}, "text"), el("pre", {}, p.text)))));
  }
  document.body.append(t);
}

header(); chart(); hallOfFame(); tree(); funnel(); allPrograms();
