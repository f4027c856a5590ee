-- The bundled small fixture (test/data/small, made by the PyTorch reference's
-- make_golden.py) must be reproduced: user vectors and top-10 per case.
\set dir `echo "${GLINTRU_TEST_DATA:-$PWD/test/data}"`/small
\set model small
\set ECHO none
\i test/parity.psql
\set ECHO all
SELECT * FROM parity_result WHERE NOT (du < 1e-4 AND same_d AND top_ok);
