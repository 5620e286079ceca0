-- How a person is handed to connect_to: 'bridge' (a second leg, media relayed) or 'refer'
-- (blind transfer with REFER).
ALTER TABLE campaigns ADD COLUMN transfer TEXT NOT NULL DEFAULT 'bridge';
