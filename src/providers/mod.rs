//! Clients for services outside the cluster (MongoDB Atlas, Cloudflare), behind traits so that
//! controllers can be tested with fakes.
