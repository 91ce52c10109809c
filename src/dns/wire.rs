//! The response encoder: a DNS message from an [`Answer`], with every name compressed and the
//! answer cut to the bytes the transport allows.
//!
//! Pure: values in, bytes out. cairn encodes responses itself instead of through hickory's
//! `BinEncoder`, because that encoder stops compressing after 120 names in a message (a
//! defence against decompression bombs it borrowed from Unbound) and keeps at most 64
//! compression targets: a 300-instance SRV answer then repeats the question name and every
//! node name in full, about a third more bytes. Here:
//! - every name (owner names, and the names inside NS, CNAME, PTR and SOA data) is written as
//!   a pointer to an earlier copy of its longest known suffix, compared case-insensitively.
//!   Two limits are the protocol's own: a pointer holds a 14-bit offset, so only names written
//!   in the first 16 KiB can be pointed to; and SRV targets are never compressed (RFC 2782),
//!   though later names may point into them;
//! - when the message exceeds the budget (512 bytes for UDP without EDNS, the EDNS size, or
//!   [`DNS_TCP_MESSAGE_BYTES_MAX`] over TCP), the answer section is cut to the most records
//!   that fit together with the additional records that belong to them (one address record per
//!   kept SRV record: `answer::retain_glue_of_answers`), and the OPT record is always kept, so
//!   an EDNS client still sees EDNS. Consul cuts the same way (`trimUDPResponse`: binary
//!   search on the answer count, then `syncExtra`).

use std::collections::HashMap;

use hickory_server::proto::op::{Edns, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use super::answer::{Answer, retain_glue_of_answers};

/// Largest DNS message, in bytes: TCP frames carry a 16-bit length (RFC 1035 section 4.2.2).
pub(crate) const DNS_TCP_MESSAGE_BYTES_MAX: usize = u16::MAX as usize;

/// Largest offset a compression pointer can hold (14 bits).
const COMPRESSION_POINTER_OFFSET_MAX: usize = 0x3FFF;

/// Longest name in wire form, in bytes (RFC 1035 section 2.3.4).
const NAME_BYTES_MAX: usize = 255;

/// Size of the fixed message header, in bytes.
const HEADER_BYTES: usize = 12;

/// Why a record could not be encoded. Our answers are built from valid records, so this means
/// a bug; the server then answers SERVFAIL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("record data of type {record_type} does not encode: {reason}")]
    RecordData {
        record_type: RecordType,
        reason: String,
    },
    #[error("record data of {bytes} bytes is longer than a record can hold")]
    RecordTooLong { bytes: usize },
}

/// The header fields of a response, besides the section counts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResponseHeader {
    pub id: u16,
    pub op_code: OpCode,
    pub authoritative: bool,
    /// Set by the caller when it cut the answer itself (`udp_answer_limit`); the encoder also
    /// sets it when it cuts answers to fit the budget.
    pub truncated: bool,
    pub recursion_desired: bool,
    /// RA: set on every answer when recursors are configured (Consul's rule).
    pub recursion_available: bool,
    pub checking_disabled: bool,
    pub response_code: ResponseCode,
}

/// A whole response: header, the question it answers, the records and the OPT record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Response<'a> {
    pub header: ResponseHeader,
    /// `None` only for a request whose question could not be read (FORMERR).
    pub question: Option<&'a Query>,
    pub answer: &'a Answer,
    pub edns: Option<&'a Edns>,
}

/// An encoded response.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub bytes: Vec<u8>,
    /// Answer records left out to fit the budget.
    pub answers_cut: usize,
}

/// Encodes `response` in at most `budget_bytes` (never less than a header, a question and an
/// OPT record need), cutting answers as the module documentation says. `set_truncation` says
/// whether a cut sets TC: it does over UDP, so the client retries over TCP; over TCP nothing
/// bigger exists to retry with.
pub(crate) fn encode_within(
    response: &Response<'_>,
    budget_bytes: usize,
    set_truncation: bool,
) -> Result<Encoded, WireError> {
    let all = encode(response)?;
    if all.len() <= budget_bytes {
        return Ok(Encoded {
            bytes: all,
            answers_cut: 0,
        });
    }
    let answers = &response.answer.answers;
    let mut header = response.header;
    header.truncated |= set_truncation;
    let with_answers = |count: usize| -> Result<Vec<u8>, WireError> {
        let mut answer = Answer {
            response_code: response.answer.response_code,
            answers: answers[..count].to_vec(),
            authorities: response.answer.authorities.clone(),
            additionals: response.answer.additionals.clone(),
        };
        retain_glue_of_answers(&mut answer);
        encode(&Response {
            header,
            answer: &answer,
            ..*response
        })
    };
    // Binary search for the most answers that fit: `fitting` fits, `too_many` does not.
    let (mut fitting, mut too_many) = (0, answers.len());
    let mut best = with_answers(0)?;
    while too_many - fitting > 1 {
        let middle = fitting + (too_many - fitting) / 2;
        let bytes = with_answers(middle)?;
        if bytes.len() <= budget_bytes {
            (fitting, best) = (middle, bytes);
        } else {
            too_many = middle;
        }
    }
    if best.len() > budget_bytes {
        // Not even the authority section fits: header, question and OPT alone always do.
        let bare = Answer {
            response_code: response.answer.response_code,
            ..Answer::default()
        };
        best = encode(&Response {
            header,
            answer: &bare,
            ..*response
        })?;
    }
    Ok(Encoded {
        bytes: best,
        answers_cut: answers.len() - fitting,
    })
}

/// Encodes the whole response, with no budget.
pub(crate) fn encode(response: &Response<'_>) -> Result<Vec<u8>, WireError> {
    let mut writer = Writer::default();
    let answer = response.answer;
    let additional_count = answer.additionals.len() + usize::from(response.edns.is_some());
    writer.header(
        &response.header,
        [
            usize::from(response.question.is_some()),
            answer.answers.len(),
            answer.authorities.len(),
            additional_count,
        ],
    );
    if let Some(question) = response.question {
        writer.name(question.name(), true);
        writer.u16(u16::from(question.query_type()));
        writer.u16(u16::from(question.query_class()));
    }
    for record in answer
        .answers
        .iter()
        .chain(&answer.authorities)
        .chain(&answer.additionals)
    {
        writer.record(record)?;
    }
    if let Some(edns) = response.edns {
        writer.opt(edns, response.header.response_code);
    }
    Ok(writer.bytes)
}

/// The message being written, and where each name suffix already written starts.
#[derive(Default)]
struct Writer {
    bytes: Vec<u8>,
    /// Lower-case wire form of a name suffix → offset of its first copy (below 16 KiB).
    suffixes: HashMap<Vec<u8>, u16>,
}

impl Writer {
    fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    fn header(&mut self, header: &ResponseHeader, counts: [usize; 4]) {
        debug_assert!(self.bytes.is_empty());
        self.u16(header.id);
        let flag = |set: bool, bit: u8| if set { bit } else { 0 };
        let op_code = u8::from(header.op_code) & 0x0F;
        // QR, opcode, AA, TC, RD.
        self.bytes.push(
            0x80 | (op_code << 3)
                | flag(header.authoritative, 0x04)
                | flag(header.truncated, 0x02)
                | flag(header.recursion_desired, 0x01),
        );
        // RA, Z, AD, CD, RCODE (its low 4 bits; the rest is in OPT).
        self.bytes.push(
            flag(header.recursion_available, 0x80)
                | flag(header.checking_disabled, 0x10)
                | (header.response_code.low() & 0x0F),
        );
        for count in counts {
            // Sections never hold 65536 records: answers are bounded far below that.
            self.u16(u16::try_from(count).unwrap_or(u16::MAX));
        }
        debug_assert_eq!(self.bytes.len(), HEADER_BYTES);
    }

    /// Writes `name`, ending in a pointer to an earlier copy of its longest known suffix when
    /// `compress` is set. Either way its suffixes become targets for later names.
    fn name(&mut self, name: &Name, compress: bool) {
        let labels: Vec<&[u8]> = name.iter().collect();
        let mut lower = Vec::with_capacity(NAME_BYTES_MAX);
        let mut starts = Vec::with_capacity(labels.len());
        for label in &labels {
            starts.push(lower.len());
            lower.push(label.len() as u8);
            lower.extend(label.iter().map(u8::to_ascii_lowercase));
        }
        for (label, start) in labels.iter().zip(&starts) {
            let suffix = &lower[*start..];
            if compress && let Some(offset) = self.suffixes.get(suffix) {
                let pointer = 0xC000 | *offset;
                self.u16(pointer);
                return;
            }
            let here = self.bytes.len();
            if here <= COMPRESSION_POINTER_OFFSET_MAX {
                self.suffixes.entry(suffix.to_vec()).or_insert(here as u16);
            }
            self.bytes.push(label.len() as u8);
            self.bytes.extend_from_slice(label);
        }
        self.bytes.push(0);
    }

    fn record(&mut self, record: &Record) -> Result<(), WireError> {
        self.name(&record.name, true);
        self.u16(u16::from(record.record_type()));
        self.u16(u16::from(record.dns_class));
        self.u32(record.ttl);
        let length_at = self.bytes.len();
        self.u16(0);
        self.rdata(&record.data)?;
        let length = self.bytes.len() - length_at - 2;
        let length =
            u16::try_from(length).map_err(|_| WireError::RecordTooLong { bytes: length })?;
        self.bytes[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
        Ok(())
    }

    fn rdata(&mut self, data: &RData) -> Result<(), WireError> {
        match data {
            RData::A(a) => self.bytes.extend_from_slice(&a.0.octets()),
            RData::AAAA(aaaa) => self.bytes.extend_from_slice(&aaaa.0.octets()),
            RData::CNAME(cname) => self.name(&cname.0, true),
            RData::NS(ns) => self.name(&ns.0, true),
            RData::PTR(ptr) => self.name(&ptr.0, true),
            RData::SOA(soa) => {
                self.name(&soa.mname, true);
                self.name(&soa.rname, true);
                self.u32(soa.serial);
                // The timers are 32-bit fields; hickory types three of them as signed.
                for timer in [soa.refresh, soa.retry, soa.expire] {
                    self.bytes.extend_from_slice(&timer.to_be_bytes());
                }
                self.u32(soa.minimum);
            }
            RData::SRV(srv) => {
                self.u16(srv.priority);
                self.u16(srv.weight);
                self.u16(srv.port);
                // RFC 2782: "name compression is not to be used for this field".
                self.name(&srv.target, false);
            }
            RData::TXT(txt) => {
                for string in txt.txt_data.iter() {
                    // `TXT` holds character-strings of at most 255 bytes each.
                    self.bytes.push(string.len().min(255) as u8);
                    self.bytes
                        .extend_from_slice(&string[..string.len().min(255)]);
                }
            }
            other => self.rdata_uncompressed(other)?,
        }
        Ok(())
    }

    /// Any other type, through hickory's encoder with names uncompressed (RFC 3597 forbids
    /// compressing names in the data of types defined after RFC 1035).
    fn rdata_uncompressed(&mut self, data: &RData) -> Result<(), WireError> {
        let mut bytes = Vec::new();
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_name_encoding(NameEncoding::Uncompressed);
        data.emit(&mut encoder)
            .map_err(|error| WireError::RecordData {
                record_type: data.record_type(),
                reason: error.to_string(),
            })?;
        self.bytes.extend_from_slice(&bytes);
        Ok(())
    }

    /// The OPT pseudo-record (RFC 6891): our UDP size, the high bits of the response code,
    /// version 0, no flags and no options.
    fn opt(&mut self, edns: &Edns, response_code: ResponseCode) {
        self.bytes.push(0); // the root name
        self.u16(u16::from(RecordType::OPT));
        self.u16(edns.max_payload());
        self.bytes.push(response_code.high());
        self.bytes.push(edns.version());
        self.u16(0); // DO and the other flags
        self.u16(0); // no options
    }
}
