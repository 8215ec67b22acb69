#![allow(dead_code)]

pub mod garage;
pub mod postgres;
