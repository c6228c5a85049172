"""Models: where one comes from (sources), what it is (info), whether it can be used (checks), and
which chat template it speaks (template_choice)."""
