//! Streaming parser of `affreporting.asp` answers: the SOAP/XML report, the
//! CSV report with its preamble, SOAP faults, "No Records", "inactive
//! report" and HTML error pages. Rows are produced one at a time from any
//! `AsyncRead` (the HTTP body, a file, a byte slice); memory stays bounded by
//! the size of one row, whatever the size of the report.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use futures::Stream;
use quick_xml::events::Event;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, ReadBuf};

use super::error::{KnownMessage, PollError, classify_message, sanitize};
use super::row::ReportRow;
use super::settings::{ReportFormat, RowPeriod};

/// Longest stretch of bytes without `<`, `>` or a newline: bounds the size
/// of any single XML event or CSV line the parsers buffer.
pub const MAX_RUN_BYTES: usize = 1 << 20;
/// Largest row (sum of its values, or one CSV record).
pub const MAX_ROW_BYTES: usize = 1 << 20;
/// Most fields in a row.
pub const MAX_FIELDS: usize = 2_000;
const MAX_DEPTH: usize = 64;
const MAX_NOTE: usize = 4_096;
const MAX_PREAMBLE_BYTES: usize = 1 << 20;
const MAX_PREAMBLE_LINES: usize = 10_000;
const READ_BUFFER: usize = 64 * 1024;

/// What a finished (or failed) read saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchSummary {
    /// The form the answer had (not necessarily the one requested).
    pub format: Option<ReportFormat>,
    /// Rows handed out (totals rows excluded).
    pub rows: u64,
    /// Totals rows (`rowid` 2) dropped.
    pub totals_rows: u64,
    /// CSV lines that were not rows (blank lines, one-field footers).
    pub skipped_lines: u64,
    /// The program said "No Records".
    pub no_records: bool,
    /// Bytes read from the body.
    pub bytes: u64,
}

/// Carries a classified error through `std::io::Error` (body stream
/// failures, size limits), so the parser can hand back the original.
#[derive(Debug)]
pub(crate) struct StreamFailure(pub(crate) PollError);

impl fmt::Display for StreamFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StreamFailure {}

fn io_to_poll(e: &io::Error) -> PollError {
    if let Some(f) = e.get_ref().and_then(|i| i.downcast_ref::<StreamFailure>()) {
        return f.0.clone();
    }
    if e.kind() == io::ErrorKind::TimedOut {
        return PollError::Timeout { secs: 0 };
    }
    PollError::Transport {
        detail: sanitize(&e.to_string()),
    }
}

fn malformed(detail: &str) -> PollError {
    PollError::Malformed {
        detail: detail.to_owned(),
    }
}

/// Counts bytes and refuses overlong runs without markup or line breaks.
struct Guarded<R> {
    inner: R,
    run: usize,
    bytes: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Guarded<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        this.bytes.fetch_add(new.len() as u64, Ordering::Relaxed);
        let mut pos = 0;
        for at in memchr::memchr3_iter(b'<', b'>', b'\n', new) {
            this.run += at - pos;
            if this.run > MAX_RUN_BYTES {
                return Poll::Ready(Err(too_long()));
            }
            this.run = 0;
            pos = at + 1;
        }
        this.run += new.len() - pos;
        if this.run > MAX_RUN_BYTES {
            return Poll::Ready(Err(too_long()));
        }
        Poll::Ready(Ok(()))
    }
}

fn too_long() -> io::Error {
    io::Error::other(StreamFailure(malformed(
        "more than 1 MiB without markup or line break",
    )))
}

type Source<R> = BufReader<Guarded<R>>;

enum Stage<R> {
    Sniff(Source<R>),
    Xml(Box<XmlStage<R>>),
    Csv(Box<CsvStage<R>>),
    Done,
}

/// Pull parser of one answer. Call [`RowReader::next_row`] until it gives
/// `Ok(None)` (the end, "No Records" included) or an error. Not
/// cancel-safe: dropping a pending `next_row` ends the read.
pub struct RowReader<R> {
    stage: Stage<R>,
    period: RowPeriod,
    status: u16,
    summary: FetchSummary,
    bytes: Arc<AtomicU64>,
    /// Removed from error details (the security key, for HTTP bodies).
    secret: Option<String>,
}

impl<R> fmt::Debug for RowReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowReader")
            .field("period", &self.period)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> RowReader<R> {
    /// Reads an answer from `reader`; `period` is the request's
    /// ([`super::ReportRequest::period`]).
    pub fn new(reader: R, period: RowPeriod) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let guarded = Guarded {
            inner: reader,
            run: 0,
            bytes: Arc::clone(&bytes),
        };
        Self {
            stage: Stage::Sniff(BufReader::with_capacity(READ_BUFFER, guarded)),
            period,
            status: 200,
            summary: FetchSummary::default(),
            bytes,
            secret: None,
        }
    }

    /// Errors will not repeat `secret` should the answer echo it.
    pub(crate) fn with_secret(mut self, secret: &str) -> Self {
        self.secret = Some(secret.to_owned());
        self
    }

    /// The HTTP status the body came with (for error reports).
    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// What was read so far.
    pub fn summary(&self) -> FetchSummary {
        let mut s = self.summary.clone();
        s.bytes = self.bytes.load(Ordering::Relaxed);
        s
    }

    /// The next row, `Ok(None)` at the end. Totals rows are skipped.
    pub async fn next_row(&mut self) -> Result<Option<ReportRow>, PollError> {
        let result = self.next_row_inner().await;
        match (&self.secret, result) {
            (Some(secret), Err(e)) => Err(e.without_secret(secret)),
            (_, r) => r,
        }
    }

    async fn next_row_inner(&mut self) -> Result<Option<ReportRow>, PollError> {
        loop {
            match std::mem::replace(&mut self.stage, Stage::Done) {
                Stage::Done => return Ok(None),
                Stage::Sniff(src) => self.stage = self.sniff(src).await?,
                Stage::Xml(mut x) => {
                    let r = x.next(&self.period, self.status, &mut self.summary).await;
                    if matches!(r, Ok(Some(_))) {
                        self.stage = Stage::Xml(x);
                    }
                    return r;
                }
                Stage::Csv(mut c) => {
                    let r = c.next(&self.period, &mut self.summary).await;
                    if matches!(r, Ok(Some(_))) {
                        self.stage = Stage::Csv(c);
                    }
                    return r;
                }
            }
        }
    }

    /// The rows as a stream (ends after the first error).
    pub fn into_stream(self) -> impl Stream<Item = Result<ReportRow, PollError>> {
        futures::stream::unfold(Some(self), |state| async move {
            let mut reader = state?;
            match reader.next_row().await {
                Ok(Some(row)) => Some((Ok(row), Some(reader))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    async fn sniff(&mut self, mut src: Source<R>) -> Result<Stage<R>, PollError> {
        loop {
            let buf = src.fill_buf().await.map_err(|e| io_to_poll(&e))?;
            if buf.is_empty() {
                return Err(malformed("empty answer"));
            }
            // Whitespace and a byte order mark before the content.
            let skip = buf
                .iter()
                .take_while(|b| b.is_ascii_whitespace() || matches!(b, 0xEF | 0xBB | 0xBF))
                .count();
            let first = buf.get(skip).copied();
            src.consume(skip);
            match first {
                None => continue,
                Some(b'<') => {
                    self.summary.format = Some(ReportFormat::Xml);
                    return Ok(Stage::Xml(Box::new(XmlStage::new(src))));
                }
                Some(_) => {
                    self.summary.format = Some(ReportFormat::Csv);
                    return match CsvStage::open(src, self.status, &mut self.summary).await? {
                        Some(c) => Ok(Stage::Csv(Box::new(c))),
                        None => Ok(Stage::Done),
                    };
                }
            }
        }
    }
}

fn fixed_period(p: &RowPeriod) -> Option<String> {
    match p {
        RowPeriod::Fixed(k) => Some(k.clone()),
        RowPeriod::FromRow => None,
    }
}

fn push_bounded(s: &mut String, text: &str, max: usize) {
    if s.len() >= max {
        return;
    }
    if !s.is_empty() {
        s.push(' ');
    }
    let room = max.saturating_sub(s.len());
    let mut cut = text.len().min(room);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    s.push_str(&text[..cut]);
}

const HTML_NAMES: [&str; 14] = [
    "html", "head", "body", "title", "meta", "div", "p", "br", "h1", "h2", "table", "span",
    "script", "style",
];

fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

struct XmlStage<R> {
    reader: quick_xml::Reader<Source<R>>,
    buf: Vec<u8>,
    st: XmlState,
}

/// The parser's state, apart from the reader and its buffer so that an
/// event borrowed from the buffer can be handed to it without copying.
#[derive(Default)]
struct XmlState {
    depth: usize,
    row_depth: Option<usize>,
    fields: Vec<(Arc<str>, String)>,
    /// Field names of the previous row, by position: rows repeat them.
    names: Vec<Arc<str>>,
    row_bytes: usize,
    /// The field being read, and its depth.
    field: Option<(Arc<str>, String, usize)>,
    fault: bool,
    fault_string_depth: Option<usize>,
    fault_text: String,
    seen_element: bool,
    seen_report: bool,
    htmlish: bool,
    loose_text: String,
}

impl<R: AsyncRead + Unpin> XmlStage<R> {
    fn new(src: Source<R>) -> Self {
        let mut reader = quick_xml::Reader::from_reader(src);
        reader.config_mut().trim_text(true);
        Self {
            reader,
            buf: Vec::with_capacity(1024),
            st: XmlState::default(),
        }
    }

    async fn next(
        &mut self,
        period: &RowPeriod,
        status: u16,
        summary: &mut FetchSummary,
    ) -> Result<Option<ReportRow>, PollError> {
        loop {
            self.buf.clear();
            let st = &mut self.st;
            match self.reader.read_event_into_async(&mut self.buf).await {
                Err(quick_xml::Error::Io(e)) => return Err(io_to_poll(&e)),
                Err(e) => {
                    if st.htmlish {
                        return Err(PollError::HtmlErrorPage { status });
                    }
                    return Err(PollError::Malformed {
                        detail: sanitize(&format!("XML: {e}")),
                    });
                }
                Ok(Event::Start(e)) => st.on_start(e.local_name().as_ref(), status)?,
                Ok(Event::Empty(e)) => st.on_empty(e.local_name().as_ref(), status)?,
                Ok(Event::End(_)) => {
                    if let Some(row) = st.on_end(period) {
                        if row.is_totals() {
                            summary.totals_rows += 1;
                            continue;
                        }
                        summary.rows += 1;
                        return Ok(Some(row));
                    }
                }
                Ok(Event::Text(t)) => match t.unescape() {
                    Ok(s) => st.on_text(&s)?,
                    // An entity XML does not define (`&nbsp;`): keep the text as sent.
                    Err(_) => st.on_text(&lossy(&t))?,
                },
                Ok(Event::CData(c)) => st.on_text(&lossy(&c))?,
                Ok(Event::DocType(d)) => {
                    if !st.seen_element && lossy(&d).to_ascii_lowercase().contains("html") {
                        return Err(PollError::HtmlErrorPage { status });
                    }
                }
                Ok(Event::Eof) => return st.finish(status, summary),
                Ok(_) => {}
            }
        }
    }
}

impl XmlState {
    fn element(&mut self, name: &[u8], status: u16) -> Result<(), PollError> {
        if HTML_NAMES
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
        {
            self.htmlish = true;
        }
        if !self.seen_element {
            self.seen_element = true;
            if [&b"html"[..], b"head", b"body"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            {
                return Err(PollError::HtmlErrorPage { status });
            }
        }
        Ok(())
    }

    fn on_start(&mut self, name: &[u8], status: u16) -> Result<(), PollError> {
        self.element(name, status)?;
        if self.depth >= MAX_DEPTH {
            return Err(malformed("elements nested too deep"));
        }
        self.depth += 1;
        let depth = self.depth;
        if let Some(rd) = self.row_depth {
            if self.field.is_none() && depth == rd + 1 {
                self.start_field()?;
                let name = self.name(name);
                self.field = Some((name, String::new(), depth));
            }
        } else if name.eq_ignore_ascii_case(b"row") {
            self.row_depth = Some(depth);
            self.fields.clear();
            self.row_bytes = 0;
            self.seen_report = true;
        } else if name.eq_ignore_ascii_case(b"reportresponse") {
            self.seen_report = true;
        } else if name.eq_ignore_ascii_case(b"fault") {
            self.fault = true;
        } else if name.eq_ignore_ascii_case(b"faultstring") && self.fault {
            self.fault_string_depth = Some(depth);
        }
        Ok(())
    }

    fn start_field(&self) -> Result<(), PollError> {
        if self.fields.len() >= MAX_FIELDS {
            return Err(malformed("a row has too many fields"));
        }
        Ok(())
    }

    /// The name of the next field, shared with the previous row's when equal.
    fn name(&mut self, name: &[u8]) -> Arc<str> {
        let at = self.fields.len();
        if let Some(n) = self.names.get(at).filter(|n| n.as_bytes() == name) {
            return Arc::clone(n);
        }
        let n: Arc<str> = Arc::from(lossy(name));
        if at < self.names.len() {
            self.names[at] = Arc::clone(&n);
        } else if at == self.names.len() {
            self.names.push(Arc::clone(&n));
        }
        n
    }

    fn on_empty(&mut self, name: &[u8], status: u16) -> Result<(), PollError> {
        self.element(name, status)?;
        if let Some(rd) = self.row_depth {
            if self.field.is_none() && self.depth == rd {
                self.start_field()?;
                let name = self.name(name);
                self.fields.push((name, String::new()));
            }
        } else if name.eq_ignore_ascii_case(b"reportresponse") || name.eq_ignore_ascii_case(b"row")
        {
            self.seen_report = true;
        }
        Ok(())
    }

    fn on_end(&mut self, period: &RowPeriod) -> Option<ReportRow> {
        let depth = self.depth;
        self.depth = self.depth.saturating_sub(1);
        if self.fault_string_depth == Some(depth) {
            self.fault_string_depth = None;
        }
        if self.field.as_ref().is_some_and(|f| f.2 == depth) {
            if let Some((name, value, _)) = self.field.take() {
                self.fields.push((name, value));
            }
            return None;
        }
        if self.row_depth == Some(depth) {
            self.row_depth = None;
            if self.fields.is_empty() {
                return None;
            }
            let fields = std::mem::replace(&mut self.fields, Vec::with_capacity(32));
            return Some(ReportRow::from_shared(fields, fixed_period(period)));
        }
        None
    }

    fn on_text(&mut self, text: &str) -> Result<(), PollError> {
        if let Some((_, value, _)) = self.field.as_mut() {
            self.row_bytes += text.len();
            if self.row_bytes > MAX_ROW_BYTES {
                return Err(malformed("a row is larger than 1 MiB"));
            }
            value.push_str(text);
        } else if self.fault_string_depth.is_some() {
            push_bounded(&mut self.fault_text, text, MAX_NOTE);
        } else if self.row_depth.is_none() {
            push_bounded(&mut self.loose_text, text, MAX_NOTE);
        }
        Ok(())
    }

    fn finish(
        &mut self,
        status: u16,
        summary: &mut FetchSummary,
    ) -> Result<Option<ReportRow>, PollError> {
        if self.fault {
            return match classify_message(&self.fault_text) {
                Some(KnownMessage::Error(e)) => Err(e),
                Some(KnownMessage::NoRecords) => {
                    summary.no_records = true;
                    Ok(None)
                }
                None => Err(PollError::SoapFault {
                    detail: sanitize(&self.fault_text),
                }),
            };
        }
        match classify_message(&self.loose_text) {
            Some(KnownMessage::Error(e)) => return Err(e),
            Some(KnownMessage::NoRecords) => {
                summary.no_records = true;
                return Ok(None);
            }
            None => {}
        }
        if self.htmlish && !self.seen_report {
            return Err(PollError::HtmlErrorPage { status });
        }
        if self.depth > 0 {
            return Err(malformed("the answer ended before the report was complete"));
        }
        if !self.seen_report {
            return Err(malformed("no reportresponse element in the answer"));
        }
        Ok(None)
    }
}

struct CsvStage<R> {
    src: Source<R>,
    core: csv_core::Reader,
    header: Vec<Arc<str>>,
    out: Vec<u8>,
    ends: Vec<usize>,
    out_len: usize,
    ends_len: usize,
}

/// Splits one line (the header) into fields.
fn split_line(line: &[u8]) -> Vec<String> {
    let mut core = csv_core::Reader::new();
    let mut out = vec![0u8; line.len() + 1];
    let mut ends = vec![0usize; line.len() + 2];
    let (mut out_len, mut ends_len, mut input) = (0usize, 0usize, line);
    loop {
        let (res, nin, nout, nend) =
            core.read_record(input, &mut out[out_len..], &mut ends[ends_len..]);
        input = &input[nin..];
        out_len += nout;
        ends_len += nend;
        match res {
            csv_core::ReadRecordResult::InputEmpty => {}
            // Cannot happen with buffers as large as the line; stop cleanly.
            csv_core::ReadRecordResult::OutputFull | csv_core::ReadRecordResult::OutputEndsFull => {
                break;
            }
            csv_core::ReadRecordResult::Record | csv_core::ReadRecordResult::End => break,
        }
    }
    let mut fields = Vec::with_capacity(ends_len);
    let mut start = 0;
    for &end in &ends[..ends_len] {
        let end = end.min(out_len).max(start);
        fields.push(String::from_utf8_lossy(&out[start..end]).trim().to_owned());
        start = end;
    }
    fields
}

fn is_header(fields: &[String]) -> bool {
    if fields.len() < 2 {
        return false;
    }
    let first = fields[0].trim_start_matches('\u{feff}');
    first.eq_ignore_ascii_case("rowid")
        || fields.iter().any(|f| f.eq_ignore_ascii_case("affcustomid"))
}

impl<R: AsyncRead + Unpin> CsvStage<R> {
    /// Reads the preamble up to the header line. `None`: an answer without
    /// rows ("No Records").
    async fn open(
        mut src: Source<R>,
        status: u16,
        summary: &mut FetchSummary,
    ) -> Result<Option<Self>, PollError> {
        let mut note = String::new();
        let mut line = Vec::new();
        let (mut lines, mut total) = (0usize, 0usize);
        loop {
            line.clear();
            let n = src
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| io_to_poll(&e))?;
            if n == 0 {
                break;
            }
            lines += 1;
            total += n;
            if lines > MAX_PREAMBLE_LINES || total > MAX_PREAMBLE_BYTES {
                return Err(malformed("no header line starting with \"rowid\""));
            }
            let fields = split_line(&line);
            if is_header(&fields) {
                let header = fields
                    .into_iter()
                    .map(|f| Arc::from(f.trim_start_matches('\u{feff}')))
                    .collect();
                return Ok(Some(Self {
                    src,
                    core: csv_core::Reader::new(),
                    header,
                    out: vec![0; 4096],
                    ends: vec![0; 64],
                    out_len: 0,
                    ends_len: 0,
                }));
            }
            push_bounded(&mut note, String::from_utf8_lossy(&line).trim(), MAX_NOTE);
        }
        if note.to_ascii_lowercase().contains("<html") {
            return Err(PollError::HtmlErrorPage { status });
        }
        match classify_message(&note) {
            Some(KnownMessage::NoRecords) => {
                summary.no_records = true;
                Ok(None)
            }
            Some(KnownMessage::Error(e)) => Err(e),
            None if note.trim().is_empty() => Err(malformed("empty answer")),
            None => Err(PollError::Malformed {
                detail: format!(
                    "no header line starting with \"rowid\" (the answer began: {})",
                    sanitize(&note)
                ),
            }),
        }
    }

    async fn next(
        &mut self,
        period: &RowPeriod,
        summary: &mut FetchSummary,
    ) -> Result<Option<ReportRow>, PollError> {
        loop {
            let (res, nin, nout, nend, eof) = {
                let input = self.src.fill_buf().await.map_err(|e| io_to_poll(&e))?;
                let (res, nin, nout, nend) = self.core.read_record(
                    input,
                    &mut self.out[self.out_len..],
                    &mut self.ends[self.ends_len..],
                );
                (res, nin, nout, nend, input.is_empty())
            };
            self.src.consume(nin);
            self.out_len += nout;
            self.ends_len += nend;
            match res {
                csv_core::ReadRecordResult::InputEmpty if eof => return Ok(None),
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    if self.out.len() >= MAX_ROW_BYTES {
                        return Err(malformed("a row is larger than 1 MiB"));
                    }
                    let len = self.out.len() * 2;
                    self.out.resize(len, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() > MAX_FIELDS {
                        return Err(malformed("a row has too many fields"));
                    }
                    let len = (self.ends.len() * 2).min(MAX_FIELDS + 1);
                    self.ends.resize(len, 0);
                }
                csv_core::ReadRecordResult::Record => {
                    if self.ends_len > MAX_FIELDS {
                        return Err(malformed("a row has too many fields"));
                    }
                    let row = self.take_record(period);
                    match row {
                        None => summary.skipped_lines += 1,
                        Some(r) if r.is_totals() => summary.totals_rows += 1,
                        Some(r) => {
                            summary.rows += 1;
                            return Ok(Some(r));
                        }
                    }
                }
                csv_core::ReadRecordResult::End => return Ok(None),
            }
        }
    }

    fn take_record(&mut self, period: &RowPeriod) -> Option<ReportRow> {
        let (out_len, ends_len) = (self.out_len, self.ends_len);
        self.out_len = 0;
        self.ends_len = 0;
        // Blank lines and one-field footers are not rows.
        if ends_len < 2 {
            return None;
        }
        let mut fields = Vec::with_capacity(ends_len.min(self.header.len()));
        let mut start = 0;
        for (i, &end) in self.ends[..ends_len].iter().enumerate() {
            let end = end.min(out_len).max(start);
            if let Some(name) = self.header.get(i) {
                let value = match String::from_utf8_lossy(&self.out[start..end]) {
                    Cow::Borrowed(s) => s.to_owned(),
                    Cow::Owned(s) => s,
                };
                fields.push((Arc::clone(name), value));
            }
            start = end;
        }
        Some(ReportRow::from_shared(fields, fixed_period(period)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &[u8]) -> (Result<Vec<ReportRow>, PollError>, FetchSummary) {
        futures::executor::block_on(async {
            let mut r = RowReader::new(body, RowPeriod::Fixed("2024-05".into()));
            let mut rows = Vec::new();
            loop {
                match r.next_row().await {
                    Ok(Some(row)) => rows.push(row),
                    Ok(None) => return (Ok(rows), r.summary()),
                    Err(e) => return (Err(e), r.summary()),
                }
            }
        })
    }

    const SOAP_HEAD: &str = r#"<?xml version="1.0" encoding="utf-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body>"#;
    const SOAP_TAIL: &str = "</SOAP-ENV:Body></SOAP-ENV:Envelope>";

    fn soap(inner: &str) -> String {
        format!("{SOAP_HEAD}{inner}{SOAP_TAIL}")
    }

    #[test]
    fn xml_rows_and_totals() {
        let body = soap(
            "<reportresponse>\n<row><rowid>1</rowid><currencysymbol>GBP</currencysymbol>\
             <affcustomid>QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ</affcustomid><playerid>77</playerid>\
             <Deposits>10.00</Deposits><CPACommission>0</CPACommission><totalcommission>1.02</totalcommission>\
             <merchantname>Tom &amp; Jerry</merchantname><creativename/></row>\n\
             <row><rowid>2</rowid><totalcommission>1.02</totalcommission></row></reportresponse>",
        );
        let (rows, summary) = parse(body.as_bytes());
        let rows = rows.unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.get("deposits"), Some("10.00"));
        assert_eq!(r.get("cpacommission"), Some("0"));
        assert_eq!(r.get("merchantname"), Some("Tom & Jerry"));
        assert_eq!(r.get("creativename"), Some(""));
        assert_eq!(r.period(), Some("2024-05"));
        assert_eq!(r.raw().value()["Deposits"], "10.00");
        assert_eq!(summary.rows, 1);
        assert_eq!(summary.totals_rows, 1);
        assert_eq!(summary.format, Some(ReportFormat::Xml));
        assert_eq!(summary.bytes, body.len() as u64);
    }

    #[test]
    fn xml_mixed_case_and_prefixes() {
        let body = "\u{feff}  <soap:Envelope xmlns:soap=\"x\"><soap:Body><ReportResponse><Row>\
                    <RowId>1</RowId><AffCustomId>abc</AffCustomId><TotalCommission>2.5</TotalCommission>\
                    <![CDATA[ignored]]></Row></ReportResponse></soap:Body></soap:Envelope>";
        let rows = parse(body.as_bytes()).0.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get("totalcommission"), Some("2.5"));
        assert_eq!(rows[0].affcustomid(), Some("abc"));
    }

    #[test]
    fn xml_faults_and_messages() {
        for n in ["1", "2"] {
            let body = soap(&format!(
                "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>no permission {n}</faultstring></SOAP-ENV:Fault>"
            ));
            match parse(body.as_bytes()).0 {
                Err(PollError::NoPermission { detail }) => {
                    assert_eq!(detail, format!("no permission {n}"))
                }
                other => panic!("{other:?}"),
            }
        }
        let body = soap("<SOAP-ENV:Fault><faultstring>Server busy</faultstring></SOAP-ENV:Fault>");
        assert_eq!(parse(body.as_bytes()).0.unwrap_err().code(), "soap_fault");
        let body =
            soap("<SOAP-ENV:Fault><faultstring>inactive report</faultstring></SOAP-ENV:Fault>");
        assert_eq!(
            parse(body.as_bytes()).0.unwrap_err(),
            PollError::InactiveReport
        );
        let body = soap("<reportresponse>inactive report</reportresponse>");
        assert_eq!(
            parse(body.as_bytes()).0.unwrap_err(),
            PollError::InactiveReport
        );
        let body = soap("<reportresponse>No Records</reportresponse>");
        let (rows, s) = parse(body.as_bytes());
        assert!(rows.unwrap().is_empty());
        assert!(s.no_records);
        let (rows, s) = parse(soap("<reportresponse/>").as_bytes());
        assert!(rows.unwrap().is_empty());
        assert!(!s.no_records);
        // Plain text answers.
        let (rows, s) = parse(b"No Records");
        assert!(rows.unwrap().is_empty() && s.no_records);
        assert_eq!(
            parse(b"\r\ninactive report\r\n").0.unwrap_err(),
            PollError::InactiveReport
        );
        assert_eq!(
            parse(b"no permission 2").0.unwrap_err().code(),
            "no_permission"
        );
    }

    #[test]
    fn html_pages() {
        for page in [
            "<!DOCTYPE html><html><head><title>Error</title></head><body><p>Runtime Error<br></p></body></html>",
            "<html><body>Service Unavailable</body></html>",
            "<?xml version=\"1.0\"?><!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \"x\"><html/>",
            "<HTML><HEAD><TITLE>404</TITLE></HEAD></HTML>",
            "<div><p>oops<br></div>",
        ] {
            assert_eq!(
                parse(page.as_bytes()).0.unwrap_err().code(),
                "html_error_page",
                "{page}"
            );
        }
        assert_eq!(
            parse(b"Error\n<html><body>x</body></html>")
                .0
                .unwrap_err()
                .code(),
            "html_error_page"
        );
    }

    #[test]
    fn malformed_answers() {
        for body in [
            &b""[..],
            b"   \n ",
            b"<foo>bar</foo>",
            b"hello world",
            b"<reportresponse><row><rowid>1</rowid>",
            b"<a><b></a>",
        ] {
            let e = parse(body).0.unwrap_err();
            assert_eq!(e.code(), "malformed", "{:?}", String::from_utf8_lossy(body));
            assert!(!e.retryable());
        }
    }

    #[test]
    fn truncated_report_after_rows() {
        let body = soap(
            "<reportresponse><row><rowid>1</rowid><playerid>1</playerid></row><row><rowid>1</rowid>",
        );
        let body = &body[..body.len() - SOAP_TAIL.len()];
        let (rows, _) = parse(body.as_bytes());
        assert_eq!(rows.unwrap_err().code(), "malformed");
    }

    #[test]
    fn csv_with_preamble() {
        let body = "Report: AccountReport\r\nFrom 2024/05/01 to 2024/05/31\r\n\r\n\
                    \"rowid\",\"currencysymbol\",\"affcustomid\",\"playerid\",\"merchantname\",\"Deposits\",\"totalcommission\"\r\n\
                    \"1\",\"GBP\",\"QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ\",\"77\",\"Tom, \"\"Jerry\"\"\",\"10.00\",\"1.02\"\r\n\
                    \r\n\
                    footer\r\n\
                    \"1\",\"EUR\",\"\",\"78\",\"B\",\"0\",\"-0.18\"\r\n\
                    \"2\",\"\",\"\",\"\",\"\",\"10.00\",\"0.84\"\r\n";
        let (rows, s) = parse(body.as_bytes());
        let rows = rows.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get("merchantname"), Some("Tom, \"Jerry\""));
        assert_eq!(rows[0].get("Deposits"), Some("10.00"));
        assert_eq!(rows[1].affcustomid(), None);
        assert_eq!(rows[1].get("totalcommission"), Some("-0.18"));
        assert_eq!(s.totals_rows, 1);
        assert_eq!(s.skipped_lines, 1);
        assert_eq!(s.format, Some(ReportFormat::Csv));
    }

    #[test]
    fn csv_edge_cases() {
        // No preamble, unquoted, no final newline, mixed-case header, a short row.
        let body = "RowID,AffCustomID,PlayerID,TotalCommission\n1,abc,5,2.50\n1,def,6";
        let rows = parse(body.as_bytes()).0.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get("totalcommission"), Some("2.50"));
        assert_eq!(rows[1].get("totalcommission"), None);
        // Header only.
        let (rows, _) = parse(b"\"rowid\",\"affcustomid\"\r\n");
        assert!(rows.unwrap().is_empty());
        // "No Records" after a preamble.
        let (rows, s) = parse(b"AccountReport 2024/05/01 - 2024/05/31\r\nNo Records\r\n");
        assert!(rows.unwrap().is_empty() && s.no_records);
        // Extra fields beyond the header are dropped.
        let rows = parse(b"rowid,playerid\n1,7,extra\n").0.unwrap();
        assert_eq!(rows[0].len(), 2);
    }

    #[test]
    fn day_rows_take_their_period() {
        let body = soap(
            "<reportresponse><row><rowid>1</rowid><period>05/03/2024</period><playerid>1</playerid></row></reportresponse>",
        );
        let rows = futures::executor::block_on(async {
            let mut r = RowReader::new(body.as_bytes(), RowPeriod::FromRow);
            let mut v = Vec::new();
            while let Some(row) = r.next_row().await.unwrap() {
                v.push(row);
            }
            v
        });
        assert_eq!(rows[0].period(), Some("2024-05-03"));
    }

    #[test]
    fn limits() {
        let long = format!(
            "<reportresponse>{}</reportresponse>",
            "x".repeat(MAX_RUN_BYTES + 10)
        );
        assert_eq!(parse(long.as_bytes()).0.unwrap_err().code(), "malformed");
        let mut deep = String::new();
        for _ in 0..100 {
            deep.push_str("<a>");
        }
        assert_eq!(parse(deep.as_bytes()).0.unwrap_err().code(), "malformed");
        let mut wide = String::from("<reportresponse><row>");
        for i in 0..(MAX_FIELDS + 1) {
            wide.push_str(&format!("<f{i}>1</f{i}>"));
        }
        wide.push_str("</row></reportresponse>");
        assert_eq!(parse(wide.as_bytes()).0.unwrap_err().code(), "malformed");
        let mut csv = String::from("rowid,a\n1,");
        csv.push_str(&"y,".repeat(MAX_FIELDS + 10));
        assert_eq!(parse(csv.as_bytes()).0.unwrap_err().code(), "malformed");
    }

    #[test]
    fn bounded_push() {
        let mut s = String::new();
        push_bounded(&mut s, "héllo", 3);
        assert!(s.len() <= 3);
        assert!(s.is_char_boundary(s.len()));
        let mut s = String::from("ab");
        push_bounded(&mut s, "cd", 100);
        assert_eq!(s, "ab cd");
    }
}
