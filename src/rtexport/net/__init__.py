"""rtexport's DICOM network node: the sender, the receiver, query/retrieve, storage commitment and DICOMweb.

Layers, each using only the ones above it (the package imports nothing of services, workspace or the front ends;
the receiver hands what arrives to a :class:`~rtexport.net.receiver.Sink` that the services wire to a workspace):

- :mod:`.pdu` — the PDU codec (PS3.8 9.3): records ↔ bytes, no I/O.
- :mod:`.fsm` — the PS3.8 9.2 state machine as a table.
- :mod:`.transport` — the TCP or TLS stream (Nagle off), the timers on an injectable clock, and the
  :class:`~rtexport.net.transport.Deadline` that bounds a whole operation.
- :mod:`.association` — one association driven by the calling thread: the machine's actions, ARTIM, ACSE and
  DIMSE timers, the Maximum Length we enforce on what we receive.
- :mod:`.dimse` — DIMSE messages (PS3.7): command sets, message assembly from PDV fragments, the status tables
  of ``pynetdicom.status``, and the streaming path that sends a stored file's data set straight from the file.
- :mod:`.trace` — the PDU/DIMSE trace (patient data redacted unless asked); :mod:`.hints` — why an association
  failed, in words that name the cause.
- :mod:`.link`, :mod:`.store`, :mod:`.worker`, :mod:`.send` — the storage SCU: association slots, C-STORE of one
  stored file, the parallel workers, and ``send_objects``/``echo`` on top; :mod:`.outcome` — destinations and
  per-instance results.
- :mod:`.commitment` — Storage Commitment Push Model as SCU: the N-ACTION and a listener for the report.
- :mod:`.acceptor`, :mod:`.dataset`, :mod:`.receiver` — the Storage SCP for CT and RT Structure Sets.
- :mod:`.query` — C-FIND and C-MOVE as SCU; :mod:`.dicomweb` — STOW-RS.

Why our own stack and not pynetdicom for sending: its reactor thread, queues and per-PDU state-machine events
cost too much when sending stored files on two cores. ``benchmarks/bench_send.py`` measures both in the same run,
pynetdicom tuned with TCP_NODELAY and chunked data set sends: to Orthanc (quiet, 2026-12-08), pynetdicom reached
0.52x DCMTK storescu on one association and 0.68x on two, rtexport 1.04x and 1.35-1.51x (1.63x on three); sending
alone (to ``storescp --ignore``) pynetdicom does about 0.2 GB/s, rtexport 1.2 GB/s (0.7 GB/s hashing what it
sends). A blocking
requestor needs none of that machinery: the calling thread owns the socket, the data set goes from the file to the
socket with one copy and each response is one small read. pynetdicom stays a dependency for its status tables and
as a reference peer in the tests.
"""
