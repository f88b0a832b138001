// UDP sockets: written in this session by the networking work (issue 4).
