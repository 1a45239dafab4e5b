//! Reading a message's headers whatever they hold. rdkafka's own iterator turns each header
//! name into `&str` with `unwrap()`, so one header name that is not UTF-8 would panic the
//! consumer on a message anybody can write; names are read here as the bytes they are.

use std::ffi::CStr;

use rdkafka::bindings as rd;
use rdkafka::message::{BorrowedHeaders, OwnedHeaders};

/// One header as Kafka carries it: a name of any bytes, a value or none.
pub type RawHeader<'a> = (&'a [u8], Option<&'a [u8]>);

/// Every header of `headers`, in order, names as bytes (no header at all: none).
pub fn raw(headers: Option<&OwnedHeaders>) -> impl Iterator<Item = RawHeader<'_>> {
    let borrowed: Option<&BorrowedHeaders> = headers.map(OwnedHeaders::as_borrowed);
    let native = borrowed.map(|b| b as *const BorrowedHeaders as *const rd::rd_kafka_headers_t);
    // SAFETY: `BorrowedHeaders` is rdkafka's zero-sized view of a native header list, whose
    // address is the list itself (rdkafka converts it the same way); the list lives as long
    // as `headers`, which the returned slices borrow.
    let count = native.map_or(0, |p| unsafe { rd::rd_kafka_header_cnt(p) });
    (0..count).filter_map(move |idx| {
        let p = native?;
        let mut name = std::ptr::null();
        let mut value = std::ptr::null();
        let mut size = 0usize;
        // SAFETY: as above; librdkafka fills the three out-parameters or returns an error.
        let err = unsafe { rd::rd_kafka_header_get_all(p, idx, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            return None;
        }
        // SAFETY: librdkafka keeps each name NUL-terminated and each value `size` bytes long
        // for the life of the list.
        unsafe {
            let name = CStr::from_ptr(name).to_bytes();
            let value =
                (!value.is_null()).then(|| std::slice::from_raw_parts(value.cast::<u8>(), size));
            Some((name, value))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Header;

    #[test]
    fn every_header_is_read_whatever_its_bytes() {
        let h = OwnedHeaders::new()
            .insert(Header {
                key: "id",
                value: Some("a"),
            })
            .insert(Header {
                key: "id",
                value: Some(&[0xffu8, 0xfe][..]),
            })
            .insert(Header::<&[u8]> {
                key: "none",
                value: None,
            });
        let got: Vec<_> = raw(Some(&h)).collect();
        assert_eq!(
            got,
            vec![
                (&b"id"[..], Some(&b"a"[..])),
                (&b"id"[..], Some(&[0xffu8, 0xfe][..])),
                (&b"none"[..], None),
            ]
        );
        assert_eq!(raw(None).count(), 0);
    }

    #[test]
    fn a_header_name_that_is_not_utf8_is_read_not_a_panic() {
        let h = OwnedHeaders::new();
        let name = [b'x', 0xff, 0xfe];
        let p = h.as_borrowed() as *const BorrowedHeaders as *mut rd::rd_kafka_headers_t;
        // SAFETY: a list this test owns; librdkafka copies name and value.
        let err = unsafe {
            rd::rd_kafka_header_add(
                p,
                name.as_ptr().cast(),
                name.len() as isize,
                b"v".as_ptr().cast(),
                1,
            )
        };
        assert_eq!(err, rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
        let got: Vec<_> = raw(Some(&h)).collect();
        assert_eq!(got, vec![(&name[..], Some(&b"v"[..]))]);
    }
}
