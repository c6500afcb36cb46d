package realmatomo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Server is PHP's built-in web server serving one Matomo directory on a
// free loopback port: the installer, the HTTP API and the tracker.
type Server struct {
	URL  string // http://127.0.0.1:PORT/
	cmd  *exec.Cmd
	http *http.Client
	log  *bytes.Buffer
}

// StartServer serves dir with `php -S`. PHP_CLI_SERVER_WORKERS lets bulk
// tracking and the API overlap.
func StartServer(ctx context.Context, dir string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(phpBinary(), "-S", addr, "-t", dir)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PHP_CLI_SERVER_WORKERS=4")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting php -S: %w", err)
	}
	jar, _ := cookiejar.New(nil)
	s := &Server{URL: "http://" + addr + "/", cmd: cmd, log: &log,
		http: &http.Client{Jar: jar, Timeout: 5 * time.Minute}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("php -S on %s did not answer: %s", addr, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close stops the server and its workers.
func (s *Server) Close() {
	if s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		_ = s.cmd.Wait()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// request sends one GET (form == nil) or POST to index.php and returns the body.
func (s *Server) request(ctx context.Context, path string, query, form url.Values) ([]byte, error) {
	u := s.URL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	method, body := http.MethodGet, io.Reader(nil)
	if form != nil {
		method, body = http.MethodPost, strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		return b, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, snippet(b))
	}
	return b, nil
}

// API calls one method of Matomo's HTTP API with a token and decodes the
// JSON answer into out (when not nil). Matomo answers errors with HTTP 200
// and {"result":"error","message":…}.
func (s *Server) API(ctx context.Context, token, method string, params url.Values, out any) error {
	q := url.Values{"module": {"API"}, "method": {method}, "format": {"json"}}
	for k, v := range params {
		q[k] = v
	}
	form := url.Values{"token_auth": {token}}
	b, err := s.request(ctx, "index.php", q, form)
	if err != nil {
		return fmt.Errorf("API %s: %w", method, err)
	}
	var e struct {
		Result  string `json:"result"`
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &e) == nil && e.Result == "error" {
		return fmt.Errorf("API %s: %s", method, e.Message)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("API %s: %w: %s", method, err, snippet(b))
	}
	return nil
}

// Visit is one backdated single-action visit for the bulk tracking API.
type Visit struct {
	IDSite int
	At     time.Time
}

// Track sends visits through matomo.php's bulk API (`cdt` and `cip` need
// the token), in batches.
func (s *Server) Track(ctx context.Context, token string, visits []Visit) error {
	for start := 0; start < len(visits); start += 200 {
		end := min(start+200, len(visits))
		var reqs []string
		for i, v := range visits[start:end] {
			n := start + i
			id := fmt.Sprintf("%016x", uint64(v.At.UnixNano())^uint64(n)<<20^uint64(v.IDSite))
			q := url.Values{
				"idsite": {strconv.Itoa(v.IDSite)}, "rec": {"1"}, "new_visit": {"1"},
				"url": {fmt.Sprintf("http://site%d.example.org/page%d", v.IDSite, n%7)},
				"_id": {id}, "cid": {id}, "cdt": {strconv.FormatInt(v.At.Unix(), 10)},
				"cip":        {fmt.Sprintf("10.%d.%d.%d", v.IDSite, (n/250)%250, n%250+1)},
				"ua":         {"Mozilla/5.0 (X11; Linux x86_64) matomod-test"},
				"send_image": {"0"},
			}
			reqs = append(reqs, "?"+q.Encode())
		}
		body, _ := json.Marshal(map[string]any{"requests": reqs, "token_auth": token})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"matomo.php", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.http.Do(req)
		if err != nil {
			return fmt.Errorf("bulk tracking: %w", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var r struct {
			Status  string `json:"status"`
			Tracked int    `json:"tracked"`
			Invalid int    `json:"invalid"`
		}
		if err := json.Unmarshal(b, &r); err != nil || r.Status != "success" || r.Tracked != end-start {
			return fmt.Errorf("bulk tracking: HTTP %d, tracked %d of %d: %s", resp.StatusCode, r.Tracked, end-start, snippet(b))
		}
	}
	return nil
}

// errorBox is the text of the page's first error box.
func errorBox(b []byte) string {
	i := bytes.Index(b, []byte(`<div class="alert alert-danger`))
	if i < 0 {
		return ""
	}
	b = b[i:]
	if j := bytes.Index(b, []byte("</div>")); j > 0 {
		b = b[:j]
	}
	return snippet(tagRE.ReplaceAll(b, nil))
}

var tagRE = regexp.MustCompile(`<[^>]*>`)

func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// install runs Matomo's web installer against an existing empty database,
// then makes a token for the API.
func (s *Server) install(ctx context.Context, db DBConfig, user, password string) (token string, err error) {
	steps := []struct {
		query url.Values
		form  url.Values
	}{
		{url.Values{"action": {"systemCheck"}}, nil},
		{url.Values{"action": {"databaseSetup"}}, url.Values{"type": {"InnoDB"}, "host": {db.Host + ":" + strconv.Itoa(db.Port)},
			"username": {db.User}, "password": {db.Password}, "dbname": {db.Name}, "tables_prefix": {db.Prefix}, "adapter": {"PDO\\MYSQL"}}},
		{url.Values{"module": {"Installation"}, "action": {"tablesCreation"}}, nil},
		{url.Values{"module": {"Installation"}, "action": {"setupSuperUser"}}, url.Values{"login": {user}, "password": {password},
			"password_bis": {password}, "email": {"admin@example.org"}, "subscribe_newsletter_piwikorg": {"0"}, "subscribe_newsletter_professionalservices": {"0"}}},
		{url.Values{"module": {"Installation"}, "action": {"firstWebsiteSetup"}}, url.Values{"siteName": {"Site UTC"},
			"url": {"http://site1.example.org"}, "timezone": {"UTC"}, "ecommerce": {"0"}}},
		{url.Values{"module": {"Installation"}, "action": {"trackingCode"}, "site_idSite": {"1"}, "site_name": {"Site UTC"}}, nil},
		{url.Values{"module": {"Installation"}, "action": {"finished"}, "site_idSite": {"1"}, "site_name": {"Site UTC"}}, url.Values{"submit": {"Continue"}}},
	}
	for _, st := range steps {
		b, err := s.request(ctx, "index.php", st.query, st.form)
		if err != nil {
			return "", fmt.Errorf("installer step %s: %w", st.query.Encode(), err)
		}
		// A form that failed validation shows itself again with an error
		// box; the translations embedded in every page make plain
		// text matching useless.
		if bytes.Contains(b, []byte(`<div class="alert alert-danger`)) {
			return "", fmt.Errorf("installer step %s reported an error: %s", st.query.Encode(), errorBox(b))
		}
	}
	var tok struct {
		Value string `json:"value"`
	}
	q := url.Values{"module": {"API"}, "method": {"UsersManager.createAppSpecificTokenAuth"}, "format": {"json"}}
	b, err := s.request(ctx, "index.php", q, url.Values{"userLogin": {user}, "passwordConfirmation": {password}, "description": {"matomod tests"}})
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(b, &tok); err != nil || tok.Value == "" {
		return "", fmt.Errorf("creating an API token: %s", snippet(b))
	}
	return tok.Value, nil
}

func phpBinary() string {
	if p := os.Getenv("MATOMOD_PHP"); p != "" {
		return p
	}
	return "php"
}

// console runs Matomo's console in dir and returns its combined output.
func console(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, phpBinary(), append([]string{filepath.Join(dir, "console")}, args...)...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("console %s: %w: %s", strings.Join(args, " "), err, snippet(out))
	}
	return string(out), nil
}
