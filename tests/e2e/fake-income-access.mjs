// A fake Income Access reporting API (GET /api/affreporting.asp) for the
// browser tests, answering as shared/reference/income-access.md says and as
// the Rust fake (crates/testkit/src/income_access.rs) does: the IP
// whitelist first (SOAP fault "no permission 2" to a caller outside it),
// then the security key ("no permission 1"), "inactive report" for a report
// it does not serve, AccountReport and ACIDReport as XML (a SOAP envelope,
// "No Records" when empty) or CSV (a preamble before the "rowid" header),
// with a totals row (rowid 2). Rows are running totals of the requested
// period. Every request is recorded, its key replaced by REDACTED.

import http from "node:http";

const SOAP_HEAD = '<?xml version="1.0" encoding="utf-8"?>\r\n<SOAP-ENV:Envelope ' +
  'xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body>';
const SOAP_TAIL = "</SOAP-ENV:Body></SOAP-ENV:Envelope>";

/// A UTC day as `YYYY-MM-DD`, `n` days before today.
export function daysAgo(n) {
  const d = new Date(Date.now() - n * 86400000);
  return d.toISOString().slice(0, 10);
}

/// `YYYY/MM/DD` or `YYYY-MM-DD` -> `YYYY-MM-DD`; null when neither.
function parseDate(v) {
  const m = /^(\d{4})[/-](\d{2})[/-](\d{2})$/.exec((v || "").trim());
  if (!m) return null;
  const day = `${m[1]}-${m[2]}-${m[3]}`;
  return new Date(`${day}T00:00:00Z`).toISOString().slice(0, 10) === day ? day : null;
}

const usDate = (day) => `${day.slice(5, 7)}/${day.slice(8, 10)}/${day.slice(0, 4)}`;
// Amounts are kept in pence and shown as decimal strings ("-0.18").
const money = (pence) => `${pence < 0 ? "-" : ""}${Math.floor(Math.abs(pence) / 100)}.${String(Math.abs(pence) % 100).padStart(2, "0")}`;
const escapeXml = (v) => v.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" }[c]));
const quoteCsv = (v) => `"${v.replaceAll('"', '""')}"`;

export class FakeIncomeAccess {
  constructor(key) {
    this.key = key;
    /// Callers let in (the back office's IP whitelist); null: everyone.
    this.whitelist = null;
    this.players = [];
    this.requests = [];
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  async listen() {
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.base = `http://127.0.0.1:${this.server.address().port}`;
    this.reportUrl = `${this.base}/api/affreporting.asp`;
    return this;
  }

  close() {
    this.server.close();
  }

  /// A player who came with `affcustomid`, registered on `registered`
  /// (YYYY-MM-DD), with commission entries [[day, pence], ...].
  addPlayer(playerId, affcustomid, registered, ledger = []) {
    this.players.push({ playerId, affcustomid, registered, ledger, currency: "GBP", country: "GB", siteId: 31512, bannerId: 1195 });
  }

  /// The report URL the back office generates (Reports -> API Reports).
  generatedUrl(key, { reportName = "AccountReport", format = "csv" } = {}) {
    const start = daysAgo(30).replaceAll("-", "/");
    const end = daysAgo(0).replaceAll("-", "/");
    return `${this.reportUrl}?key=${key}&reportname=${reportName}&reportformat=${format}` +
      `&reportmerchantid=0&reportstartdate=${start}&reportenddate=${end}`;
  }

  handle(req, res) {
    const url = new URL(req.url, "http://fake");
    const send = (status, type, body) => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (url.pathname.toLowerCase() !== "/api/affreporting.asp") {
      return send(404, "text/html", "<!DOCTYPE html>\r\n<html><head><title>404 - File or directory not found.</title></head><body><h2>404 - File or directory not found.</h2></body></html>");
    }
    const params = [...url.searchParams.entries()];
    const param = (name) => params.find(([k]) => k.toLowerCase() === name)?.[1];
    const keyOk = param("key") === this.key;
    this.requests.push({
      params: Object.fromEntries(params.map(([k, v]) => [k.toLowerCase(), k.toLowerCase() === "key" ? "REDACTED" : v])),
      keyOk,
    });
    const fault = (message) => send(200, "text/xml; charset=utf-8",
      `${SOAP_HEAD}<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>${message}</faultstring></SOAP-ENV:Fault>${SOAP_TAIL}`);
    // The whitelist before the key: a caller outside it learns nothing
    // about the key it sent.
    const peer = req.socket.remoteAddress.replace(/^::ffff:/, "");
    if (this.whitelist && !this.whitelist.includes(peer)) return fault("no permission 2");
    if (!keyOk) return fault("no permission 1");
    const name = (param("reportname") || "").trim().toLowerCase();
    if (name !== "accountreport" && name !== "acidreport") return send(200, "text/plain", "inactive report");
    const start = parseDate(param("reportstartdate"));
    const end = parseDate(param("reportenddate"));
    if (!start || !end) return fault("invalid report dates");
    if (!/^\s*\d+\s*$/.test(param("reportmerchantid") ?? "0")) return fault("invalid merchant id");
    const byDay = (param("reportdisplayby") || "").toLowerCase().includes("date");
    const rows = name === "acidreport" ? this.acidRows(start, end, byDay) : this.accountRows(start, end, byDay);
    for (const r of rows) for (const f of r) if (f[0] === "totalrecords") f[1] = String(rows.length);
    if (rows.length) rows.push(totalsRow(rows));
    if ((param("reportformat") || "").toLowerCase() === "csv") {
      return send(200, "text/csv; charset=utf-8", csv(rows, param("reportname"), start, end));
    }
    return send(200, "text/xml; charset=utf-8", xml(rows));
  }

  /// Days of [start, end] on which player `p` has something to report.
  days(p, start, end) {
    const inside = (d) => d >= start && d <= end;
    const days = new Set(p.ledger.map(([d]) => d).filter(inside));
    if (inside(p.registered)) days.add(p.registered);
    return [...days].sort();
  }

  commission(p, from, to) {
    return p.ledger.filter(([d]) => d >= from && d <= to).reduce((s, [, a]) => s + a, 0);
  }

  accountRows(start, end, byDay) {
    const rows = [];
    for (const p of this.players) {
      const days = this.days(p, start, end);
      if (!days.length) continue;
      for (const [from, to] of byDay ? days.map((d) => [d, d]) : [[start, end]]) {
        const total = money(this.commission(p, from, to));
        rows.push([
          ["rowid", "1"],
          ...(byDay ? [["period", usDate(from)]] : []),
          ["currencysymbol", p.currency], ["totalrecords", ""], ["merchantname", "Fake Casino"],
          ["memberid", "1001"], ["username", "fakeaffiliate"], ["siteid", String(p.siteId)],
          ["bannerid", String(p.bannerId)], ["creativename", "Text_Link_WH_Sport"], ["bannertype", "Text Links"],
          ["playerid", p.playerId], ["merchplayername", `player${p.playerId}`], ["affcustomid", p.affcustomid],
          ["playercountry", p.country], ["registrationdate", usDate(p.registered)], ["firstdeposit", ""],
          ["Deposits", "0.00"], ["trans_value", "0"], ["Commission", total], ["totalcommission", total],
        ]);
      }
    }
    return rows;
  }

  acidRows(start, end, byDay) {
    const totals = new Map();
    for (const p of this.players) {
      for (const d of this.days(p, start, end)) {
        const k = `${p.affcustomid}\u0000${byDay ? d : ""}`;
        const t = totals.get(k) || { acid: p.affcustomid, day: byDay ? d : null, regs: 0, pence: 0 };
        if (d === p.registered) t.regs += 1;
        t.pence += this.commission(p, d, d);
        totals.set(k, t);
      }
    }
    return [...totals.values()].map((t) => [
      ["rowid", "1"],
      ...(t.day ? [["period", usDate(t.day)]] : []),
      ["affcustomid", t.acid], ["clicks", "0"], ["downloads", String(t.regs)],
      ["Deposits", "0.00"], ["trans_value", "0"], ["Commission", money(t.pence)],
    ]);
  }
}

function totalsRow(rows) {
  const sum = (k) => money(rows.reduce((s, r) => s + Math.round(Number(r.find(([n]) => n === k)[1]) * 100), 0));
  return rows[0].map(([k]) => {
    if (k === "rowid") return [k, "2"];
    if (["Commission", "totalcommission", "Deposits"].includes(k)) return [k, sum(k)];
    if (k === "totalrecords") return [k, String(rows.length)];
    return [k, ""];
  });
}

function xml(rows) {
  let out = `${SOAP_HEAD}<reportresponse>`;
  if (!rows.length) out += "No Records";
  for (const r of rows) {
    out += "\r\n<row>";
    for (const [k, v] of r) out += v ? `<${k}>${escapeXml(v)}</${k}>` : `<${k}/>`;
    out += "</row>";
  }
  return `${out}</reportresponse>${SOAP_TAIL}`;
}

function csv(rows, reportName, start, end) {
  let out = `${quoteCsv(reportName || "")}\r\n${quoteCsv(`${start.replaceAll("-", "/")} - ${end.replaceAll("-", "/")}`)}\r\n\r\n`;
  if (!rows.length) return `${out}No Records\r\n`;
  out += rows[0].map(([k]) => quoteCsv(k)).join(",") + "\r\n";
  for (const r of rows) out += r.map(([, v]) => quoteCsv(v)).join(",") + "\r\n";
  return out;
}
