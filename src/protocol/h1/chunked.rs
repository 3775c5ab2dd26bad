//! A streaming decoder for `Transfer-Encoding: chunked` (RFC 9112 §7.1).
//!
//! Strict by design: hex sizes of at most 15 digits, chunk extensions only after a
//! `;`, CRLF exactly where the grammar puts it, trailer fields validated. It keeps no
//! body bytes: data events borrow from the caller's input.

use super::{is_token_byte, H1Error};

/// Longest chunk-size line we accept (size, extensions and CRLF).
const MAX_SIZE_LINE: usize = 1024;
/// Most trailer fields after the last chunk.
const MAX_TRAILER_FIELDS: usize = 64;

/// One step of decoded output.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkEvent<'a> {
    /// Body bytes, borrowed from the input.
    Data(&'a [u8]),
    /// The body ended; the raw trailer field lines (each ending in CRLF), maybe empty.
    End(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    SizeWhitespace,
    Extension(Ext),
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerLineStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// Where in a chunk extension (RFC 9112 §7.1.1) the next byte falls:
/// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// After `;`: whitespace, then a name.
    BeforeName,
    /// In the name.
    Name,
    /// Whitespace after the name: `=` or `;` must follow.
    AfterName,
    /// After `=`: whitespace, then a token or a quoted string.
    BeforeValue,
    /// In a token value.
    Value,
    /// In a quoted value.
    Quoted,
    /// After a backslash in a quoted value.
    Escape,
    /// Just after a quoted value's closing quote.
    AfterQuote,
    /// Whitespace after a value: only `;` may follow.
    AfterValue,
}

/// Decoder state for one chunked body.
#[derive(Debug)]
pub struct ChunkedDecoder {
    /// Where in the grammar the next byte falls.
    state: State,
    /// Chunk size being read, then bytes left in the current chunk.
    size: u64,
    /// Hex digits read for the current size (bounded to avoid overflow).
    digits: u8,
    /// Bytes of the current size line, bounded by `MAX_SIZE_LINE`.
    line_len: usize,
    /// Trailer section collected after the last chunk.
    trailers: Vec<u8>,
    /// Bound on the trailer section (the head size limit).
    max_trailer_bytes: usize,
    /// Body bytes decoded so far, for body size limits.
    decoded: u64,
}

impl ChunkedDecoder {
    /// A decoder whose trailer section may take at most `max_trailer_bytes`.
    pub fn new(max_trailer_bytes: usize) -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            digits: 0,
            line_len: 0,
            trailers: Vec::new(),
            max_trailer_bytes,
            decoded: 0,
        }
    }

    /// The last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes decoded so far.
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    /// Decodes from the start of `input`. Returns how many bytes were consumed and
    /// at most one event; call again with the rest until it consumes nothing.
    pub fn decode<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<ChunkEvent<'a>>), H1Error> {
        const BAD: H1Error = H1Error::Malformed("invalid chunked encoding");
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Data {
                let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                self.size -= n as u64;
                self.decoded += n as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                return Ok((i + n, Some(ChunkEvent::Data(&input[i..i + n]))));
            }
            let b = input[i];
            i += 1;
            match self.state {
                State::Size | State::SizeWhitespace | State::Extension(_) => {
                    self.line_len += 1;
                    if self.line_len > MAX_SIZE_LINE {
                        return Err(BAD);
                    }
                    self.size_line_byte(b)?;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(BAD);
                    }
                    self.line_len = 0;
                    self.digits = 0;
                    self.state = if self.size == 0 {
                        State::TrailerLineStart
                    } else {
                        State::Data
                    };
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(BAD);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(BAD);
                    }
                    self.state = State::Size;
                }
                State::TrailerLineStart => {
                    if b == b'\r' {
                        self.state = State::EndLf;
                    } else {
                        self.push_trailer(b)?;
                        self.state = State::TrailerLine;
                    }
                }
                State::TrailerLine => {
                    self.push_trailer(b)?;
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(BAD);
                    }
                    self.push_trailer(b)?;
                    self.state = State::TrailerLineStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(BAD);
                    }
                    self.state = State::Done;
                    self.check_trailers()?;
                    return Ok((i, Some(ChunkEvent::End(&self.trailers))));
                }
                // Data is handled before a byte is taken.
                State::Data => {}
                State::Done => return Ok((i - 1, None)),
            }
        }
        Ok((i, None))
    }

    fn size_line_byte(&mut self, b: u8) -> Result<(), H1Error> {
        const BAD: H1Error = H1Error::Malformed("invalid chunk size");
        match self.state {
            State::Size => {
                if let Some(d) = hex_value(b) {
                    if self.digits == 15 {
                        return Err(BAD);
                    }
                    self.digits += 1;
                    self.size = (self.size << 4) | u64::from(d);
                } else if self.digits == 0 {
                    return Err(BAD);
                } else {
                    match b {
                        b';' => self.state = State::Extension(Ext::BeforeName),
                        b' ' | b'\t' => self.state = State::SizeWhitespace,
                        b'\r' => self.state = State::SizeLf,
                        _ => return Err(BAD),
                    }
                }
            }
            State::SizeWhitespace => match b {
                b' ' | b'\t' => {}
                b';' => self.state = State::Extension(Ext::BeforeName),
                _ => return Err(BAD),
            },
            State::Extension(at) => {
                self.state = match extension_byte(at, b) {
                    Some(Step::Next(next)) => State::Extension(next),
                    Some(Step::LineEnd) => State::SizeLf,
                    None => return Err(H1Error::Malformed("invalid chunk extension")),
                }
            }
            _ => return Err(BAD),
        }
        Ok(())
    }

    fn push_trailer(&mut self, b: u8) -> Result<(), H1Error> {
        if b == 0 || (b == b'\n' && self.state != State::TrailerLf) {
            return Err(H1Error::Malformed("invalid trailer"));
        }
        if self.trailers.len() >= self.max_trailer_bytes {
            return Err(H1Error::HeadTooLarge);
        }
        self.trailers.push(b);
        Ok(())
    }

    /// Trailer fields must parse as header fields (no obs-fold, no bare CR).
    fn check_trailers(&mut self) -> Result<(), H1Error> {
        if self.trailers.is_empty() {
            return Ok(());
        }
        self.trailers.extend_from_slice(b"\r\n");
        let mut headers = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
        let result = match httparse::parse_headers(&self.trailers, &mut headers) {
            Ok(httparse::Status::Complete((n, _))) if n == self.trailers.len() => Ok(()),
            Err(httparse::Error::TooManyHeaders) => Err(H1Error::TooManyHeaders),
            _ => Err(H1Error::Malformed("invalid trailer")),
        };
        self.trailers.truncate(self.trailers.len() - 2);
        result
    }
}

/// What a byte of a chunk extension leads to.
enum Step {
    Next(Ext),
    /// The CR that ends the size line.
    LineEnd,
}

/// The next place in a chunk extension after `b`, or `None` where the grammar
/// has no place for it (an empty name, a bare `=`, a control byte, whitespace
/// before the line end).
fn extension_byte(at: Ext, b: u8) -> Option<Step> {
    let ws = b == b' ' || b == b'\t';
    let token = is_token_byte(b);
    let next = match at {
        Ext::BeforeName if ws => Ext::BeforeName,
        Ext::BeforeName | Ext::Name if token => Ext::Name,
        Ext::Name | Ext::AfterName if ws => Ext::AfterName,
        Ext::Name | Ext::AfterName if b == b'=' => Ext::BeforeValue,
        Ext::BeforeValue if ws => Ext::BeforeValue,
        Ext::BeforeValue if b == b'"' => Ext::Quoted,
        Ext::BeforeValue | Ext::Value if token => Ext::Value,
        Ext::Quoted if b == b'"' => Ext::AfterQuote,
        Ext::Quoted if b == b'\\' => Ext::Escape,
        Ext::Quoted if b == b'\t' || (b >= 0x20 && b != 0x7f) => Ext::Quoted,
        Ext::Escape if b == b'\t' || (b >= 0x20 && b != 0x7f) => Ext::Quoted,
        Ext::Value | Ext::AfterQuote | Ext::AfterValue if ws => Ext::AfterValue,
        Ext::Name | Ext::AfterName | Ext::Value | Ext::AfterQuote | Ext::AfterValue
            if b == b';' =>
        {
            Ext::BeforeName
        }
        Ext::Name | Ext::Value | Ext::AfterQuote if b == b'\r' => return Some(Step::LineEnd),
        _ => return None,
    };
    Some(Step::Next(next))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns (body, trailers).
    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), H1Error> {
        let mut dec = ChunkedDecoder::new(1024);
        let mut body = Vec::new();
        let mut trailers = None;
        let mut pending: Vec<u8> = Vec::new();
        for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                let (used, event) = dec.decode(&pending)?;
                match event {
                    Some(ChunkEvent::Data(d)) => body.extend_from_slice(d),
                    Some(ChunkEvent::End(t)) => trailers = Some(t.to_vec()),
                    None => {}
                }
                pending.drain(..used);
                if used == 0 || pending.is_empty() {
                    break;
                }
            }
        }
        match trailers {
            Some(t) if dec.is_done() => Ok((body, t)),
            _ => Err(H1Error::Malformed("incomplete")),
        }
    }

    #[test]
    fn decodes_at_every_split_point() {
        let input = b"5\r\nhello\r\n6;name=val\r\n world\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..=input.len() {
            let (body, trailers) = decode_all(input, step).unwrap();
            assert_eq!(body, b"hello world0123456789", "step {step}");
            assert_eq!(trailers, b"X-T: 1\r\n", "step {step}");
        }
    }

    #[test]
    fn stops_at_end_and_leaves_the_rest() {
        let mut dec = ChunkedDecoder::new(1024);
        let input = b"0\r\n\r\nGET / HTTP/1.1\r\n";
        let (used, event) = dec.decode(input).unwrap();
        assert_eq!(event, Some(ChunkEvent::End(b"")));
        assert_eq!(used, 5);
        assert_eq!(dec.decode(&input[used..]).unwrap(), (0, None));
    }

    #[test]
    fn rejects_invalid_encodings() {
        let cases: &[&[u8]] = &[
            b"x\r\n\r\n",
            b"\r\n",
            b"-1\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"1000000000000000\r\n",
            b"5;a\0b\r\nhello\r\n0\r\n\r\n",
            b"0\r\nbad trailer\r\n\r\n",
            b"0\r\nX: a\r\n b\r\n\r\n",
            b"0\r\n\rx",
        ];
        for case in cases {
            assert!(
                decode_all(case, case.len()).is_err(),
                "{:?} decoded",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn whitespace_is_allowed_only_before_an_extension() {
        assert!(decode_all(b"5 ;x\r\nhello\r\n0\r\n\r\n", 64).is_ok());
        assert!(decode_all(b"5 \r\nhello\r\n0\r\n\r\n", 64).is_err());
    }

    #[test]
    fn chunk_extensions_follow_the_grammar() {
        let body = |ext: &str| format!("5{ext}\r\nhello\r\n0{ext}\r\n\r\n");
        for ok in [
            ";a",
            ";a=b",
            "; a = b",
            ";a=b;c",
            ";a;b=c ;d",
            ";name=\"quoted \\\" value;\"",
            ";a=\"\"",
            ";a=\"x\" ;b",
            ";a=1.0-x_y",
        ] {
            assert!(decode_all(body(ok).as_bytes(), 3).is_ok(), "{ok:?}");
        }
        for bad in [
            ";",
            "; ",
            ";;a",
            ";=b",
            ";a=",
            ";a= ",
            ";a=b ",
            ";a ",
            ";a==b",
            ";a=b c",
            ";a=\"open",
            ";a=\"x\"y",
            ";a@b",
            ";a=\"\x01\"",
        ] {
            assert!(decode_all(body(bad).as_bytes(), 3).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trailer_section_is_bounded() {
        let mut dec = ChunkedDecoder::new(8);
        assert_eq!(
            dec.decode(b"0\r\nX-Long: 123456789\r\n\r\n"),
            Err(H1Error::HeadTooLarge)
        );
    }

    #[test]
    fn counts_decoded_bytes() {
        let mut dec = ChunkedDecoder::new(64);
        let _ = dec.decode(b"3\r\nabc").unwrap();
        assert_eq!(dec.decoded_len(), 3);
    }
}
