//! Interface addresses, routes, MTU and link state over rtnetlink.
