"""Thin trigger blueprints: parse input -> call the core (`shared`) -> shape output."""
