//! Images: what an upload really is and what of it we store ([`inspect`]);
//! the upload, import and Images API routes build on it.

pub mod inspect;
