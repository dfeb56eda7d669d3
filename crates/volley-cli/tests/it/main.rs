//! End-to-end tests of the `volley` binary against the simulator, over real HTTP.
mod bad_input;
mod bad_state;
mod cancel;
mod chaos;
mod crash;
mod estimate;
mod faults;
mod providers;
mod run;
mod support;
