"""The example endpoints as Django views: one multi-worker pitfall each, solved."""
