#![allow(dead_code)]

pub mod garage;
