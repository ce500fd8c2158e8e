//! Images: upload and import. So far the server-side fetch behind URL
//! import ([`fetch`]), which only ever talks to public addresses.

pub mod fetch;
