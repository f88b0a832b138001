// getaddrinfo / getnameinfo on the executor: written in this session (issue 4).
