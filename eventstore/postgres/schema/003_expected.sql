-- es_expected(ok, stream) returns true when ok and otherwise raises SQLSTATE ES001. An
-- inline append that sends its read-model statements in the same round trip as the
-- append itself (one implicit transaction) calls it on whether the append wrote
-- anything: an expected version that does not hold then aborts the transaction before
-- those statements could apply records that were not stored.
CREATE FUNCTION es_expected(ok boolean, stream text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION 'stream % is not at the expected version', stream USING ERRCODE = 'ES001';
    END IF;
    RETURN true;
END
$$;
