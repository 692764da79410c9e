-- Item ids are unique across all workspaces (PROTOCOL.md §3). The service takes them in
-- blocks of 1000 (one nextval per block), so ids of a block never used are skipped;
-- every id below 2^53 stays exact in JSON.
CREATE SEQUENCE IF NOT EXISTS item_id_blocks START 1 INCREMENT 1 MAXVALUE 9007199254740;
